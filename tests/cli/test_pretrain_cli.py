"""`pretrain` then `train --init` through the CLI, and the one-line refusals around them."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.fixtures.models import make_examples, write_csv
from textlstm.classifier.predictor import Classifier
from textlstm.cli import cli

LM_ARGS = ["--embedding-dim", "16", "--hidden-size", "16", "--epochs", "2", "--no-progress"]
LM_ARGS += ["--batch-size", "16"]
TRAIN = ["--epochs", "3", "--batch-size", "8", "--no-progress", "--ema-decay", "0"]


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pretrain")
    corpus = root / "corpus.txt"
    corpus.write_text("".join(e.text + "\n" for e in make_examples(40, seed=11)))
    data = write_csv(root / "topics.csv", make_examples(30, seed=5))
    out = root / "lm"
    result = CliRunner().invoke(cli, ["pretrain", str(corpus), "--out", str(out), *LM_ARGS])
    assert result.exit_code == 0, result.output
    assert "validation perplexity" in result.output
    return out, data


def _one_line_error(result: object, message: str) -> None:
    output = result.output  # type: ignore[attr-defined]
    assert result.exit_code == 1, output  # type: ignore[attr-defined]
    assert message in output, output
    assert "Traceback" not in output
    assert output.strip().count("\n") == 0, output


def test_train_init_writes_an_ordinary_bundle_that_predicts(
    lm: tuple[Path, Path], tmp_path: Path
) -> None:
    lm_path, data = lm
    out = tmp_path / "clf"
    args = ["train", str(data), "--init", str(lm_path), "--out", str(out), *TRAIN]
    result = CliRunner().invoke(cli, [*args, "--min-freq", "5"])
    assert result.exit_code == 0, result.output
    assert "--min-freq and --max-vocab are ignored" in result.output
    clf = Classifier.load(out)
    assert clf.model.config.embedding_dim == 16  # the LM's, not the default 128
    assert clf.metadata["init"]["language_model"]
    predicted = CliRunner().invoke(cli, ["predict", str(out), "goal match team striker"])
    assert predicted.exit_code == 0, predicted.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--unidirectional"], "--unidirectional contradicts the language model"),
        (["--embedding-dim", "32"], "--embedding-dim 32 contradicts the language model"),
        (["--hidden-size", "8"], "--hidden-size 8 contradicts the language model"),
        (["--layers", "2"], "--layers 2 contradicts the language model"),
        (["--embeddings", "glove.txt"], "--embeddings and --init both set the embeddings"),
    ],
)
def test_a_mismatched_lm_is_refused_in_one_line(
    lm: tuple[Path, Path], tmp_path: Path, extra: list[str], message: str
) -> None:
    lm_path, data = lm
    args = ["train", str(data), "--init", str(lm_path), "--out", str(tmp_path / "c"), *TRAIN]
    _one_line_error(CliRunner().invoke(cli, [*args, *extra]), message)


def test_explicit_flags_that_agree_with_the_lm_are_fine(
    lm: tuple[Path, Path], tmp_path: Path
) -> None:
    lm_path, data = lm
    args = ["train", str(data), "--init", str(lm_path), "--out", str(tmp_path / "c"), "--dry-run"]
    result = CliRunner().invoke(cli, [*args, "--embedding-dim", "16", "--bidirectional"])
    assert result.exit_code == 0, result.output


def test_a_tampered_lm_is_refused_in_one_line(lm: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil

    lm_path, data = lm
    copy = Path(shutil.copytree(lm_path, tmp_path / "lm"))
    weights = copy / "weights.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-3] ^= 0x01
    weights.write_bytes(bytes(raw))
    args = ["train", str(data), "--init", str(copy), "--out", str(tmp_path / "c"), *TRAIN]
    _one_line_error(
        CliRunner().invoke(cli, args), "weights.safetensors has been modified (sha256 differs"
    )


def test_a_classifier_bundle_is_not_an_lm(
    lm: tuple[Path, Path], tiny_bundle: Path, tmp_path: Path
) -> None:
    _, data = lm
    args = ["train", str(data), "--init", str(tiny_bundle), "--out", str(tmp_path / "c")]
    _one_line_error(CliRunner().invoke(cli, args), "is a classifier bundle, not a language-model")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("absent.txt", None, "absent.txt: file not found"),
        ("empty.txt", "\n\n", "empty.txt: file has no text"),
        ("notext.csv", "body,label\nhi,x\n", "notext.csv: line 1: missing column 'text'"),
        ("bad.jsonl", '{"text": "ok"}\nnot json\n', "bad.jsonl: line 2: invalid JSON"),
    ],
)
def test_a_bad_corpus_is_one_line(
    tmp_path: Path, name: str, content: str | None, message: str
) -> None:
    corpus = tmp_path / name
    if content is not None:
        corpus.write_text(content)
    result = CliRunner().invoke(cli, ["pretrain", str(corpus), "--out", str(tmp_path / "lm")])
    _one_line_error(result, message)


def test_a_bidirectional_stack_is_refused_before_reading(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["pretrain", "any.txt", "--out", str(tmp_path / "lm"), "--layers", "2"]
    )
    _one_line_error(result, "pass --unidirectional for --layers 2")
