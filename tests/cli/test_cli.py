"""The admin CLI through click's CliRunner: every --help, the train → predict → evaluate path,
and one-line errors for user mistakes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from textlstm.cli import COMMANDS, cli

SMALL = ["--embedding-dim", "16", "--hidden-size", "16", "--no-progress"]
SMALL += ["--epochs", "8", "--batch-size", "8", "--lr", "0.005", "--ema-decay", "0"]


def _all_command_paths() -> list[list[str]]:
    paths: list[list[str]] = []
    ctx = click.Context(cli)

    def walk(group: click.Group, prefix: list[str]) -> None:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None, name
            paths.append([*prefix, name])
            if isinstance(command, click.Group):
                walk(command, [*prefix, name])

    walk(cli, [])
    return paths


@pytest.mark.parametrize("path", _all_command_paths(), ids=" ".join)
def test_every_subcommand_has_help(path: list[str]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_top_level_help_lists_every_command_without_importing_torch() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from textlstm.cli import cli\n"
        "for args in (['--help'], ['train', '--help'], ['evaluate', '--help'],"
        " ['predict', '--help']):\n"
        "    r = CliRunner().invoke(cli, args)\n"
        "    assert r.exit_code == 0, r.output\n"
        "    if args == ['--help']: print(r.output)\n"
        "assert 'torch' not in sys.modules, 'torch imported by --help'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    for name in COMMANDS:
        assert name in out.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from tests.fixtures.models import make_examples, write_csv

    root = tmp_path_factory.mktemp("cli")
    data = write_csv(root / "topics.csv", make_examples(40, seed=5))
    out = root / "bundle"
    result = CliRunner().invoke(cli, ["train", str(data), "--out", str(out), *SMALL])
    assert result.exit_code == 0, result.output
    assert "validation accuracy" in result.output
    return data, out


def test_train_writes_a_complete_bundle_with_plots(trained: tuple[Path, Path]) -> None:
    _, bundle = trained
    names = {p.name for p in bundle.iterdir()}
    assert {
        "manifest.json",
        "weights.safetensors",
        "config.json",
        "tokenizer.json",
        "metrics.json",
        "training_curve.png",
        "confusion_matrix.png",
    } <= names
    assert (bundle / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((bundle / "metrics.json").read_text())
    assert {"validation", "calibration", "training"} <= set(metrics)
    config = json.loads((bundle / "config.json").read_text())
    assert config["labels"] == ["finance", "science", "sports"]
    assert len(config["data"]["fingerprint"]) == 64


def test_predict_table_and_jsonl(trained: tuple[Path, Path], tmp_path: Path) -> None:
    from tests.fixtures.models import make_examples

    _, bundle = trained
    runner = CliRunner()
    table = runner.invoke(cli, ["predict", str(bundle), "the match and the cup", "   "])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split() == ["label", "score", "text"]
    assert lines[1].split()[0] in {"finance", "science", "sports"}
    assert "empty text" in lines[2]

    fresh = make_examples(10, seed=99)  # texts the model has not seen
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps({"text": e.text}) + "\n" for e in fresh))
    jsonl = runner.invoke(cli, ["predict", str(bundle), "--input", str(texts), "--format", "jsonl"])
    assert jsonl.exit_code == 0, jsonl.output
    rows = [json.loads(line) for line in jsonl.output.splitlines()]
    assert [r["text"] for r in rows] == [e.text for e in fresh]
    correct = sum(r["label"] == e.label for r, e in zip(rows, fresh, strict=True))
    assert correct >= 0.7 * len(fresh), correct
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-5 for r in rows)


def test_evaluate_json_and_table(trained: tuple[Path, Path]) -> None:
    data, bundle = trained
    result = CliRunner().invoke(cli, ["evaluate", str(bundle), str(data), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["examples"] == 120
    assert report["accuracy"] > 0.6
    assert set(report["per_class"]) == {"finance", "science", "sports"}
    table = CliRunner().invoke(cli, ["evaluate", str(bundle), str(data)])
    assert "macro-F1" in table.output and "confusion matrix" in table.output


def test_train_register_puts_the_bundle_in_the_registry(settings_env: str, tmp_path: Path) -> None:
    from tests.fixtures.models import make_examples, write_csv

    data = write_csv(tmp_path / "d.csv", make_examples(10, seed=1))
    args = ["train", str(data), "--out", str(tmp_path / "b"), "--dry-run", "--no-progress"]
    result = CliRunner().invoke(cli, [*args, "--register", "topics", "--alias", "production"])
    assert result.exit_code == 0, result.output
    assert "registered topics@1" in result.output
    shown = CliRunner().invoke(cli, ["models", "show", "topics@production"])
    assert shown.exit_code == 0, shown.output
    assert "topics" in shown.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "missing.csv", "--out", "b"], "missing.csv: file not found"),
        (["train", "{data}", "--out", "b", "--alias", "x"], "--alias needs --register NAME"),
        (["train", "{data}", "--out", "b", "--device", "tpu"], "invalid device 'tpu'"),
        (["train", "{data}", "--out", "b", "--pooling", "last"], "add --no-embedding-skip"),
        (["train", "{data}", "--out", "b", "--label-column", "y"], "missing column 'y'"),
        (["predict", "nowhere"], "nothing to classify"),
        (["predict", "nowhere", "hello"], "model bundle nowhere not found"),
        (["evaluate", "{bundle}", "{bad}"], "line 2: label 'other' is not one the model knows"),
    ],
)
def test_user_errors_are_one_line_without_traceback(
    args: list[str],
    message: str,
    trained: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data, bundle = trained
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nhello there,other\n")
    args = [a.format(data=data, bundle=bundle, bad=bad) for a in args]
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (1, 2), result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0 or result.exit_code == 2


def test_train_with_pretrained_embeddings_reports_coverage(tmp_path: Path) -> None:
    from tests.fixtures.models import TOPICS, make_examples, write_csv

    data = write_csv(tmp_path / "d.csv", make_examples(10, seed=1))
    words = [w for topic in TOPICS.values() for w in topic][:20] + ["absent1", "absent2"]
    vectors = tmp_path / "glove.txt"
    vectors.write_text("".join(f"{w} {' '.join(['0.5'] * 12)}\n" for w in words))
    out = tmp_path / "b"
    args = ["train", str(data), "--out", str(out), "--dry-run", "--no-progress"]
    result = CliRunner().invoke(cli, [*args, "--embeddings", str(vectors)])
    assert result.exit_code == 0, result.output
    assert "pretrained embeddings: 20 of" in result.output and "coverage), dim 12" in result.output
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["embedding_dim"] == 12
    assert config["embeddings"]["found"] == 20
