"""Results API and the db / models / jobs / results commands, on PostgreSQL and SQLite."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session, sessionmaker

from textlstm.cli import cli
from textlstm.client import Client
from textlstm.store.jobs import ensure_job
from textlstm.store.predictions import PredictionRecord, save_predictions
from textlstm.store.registry import register_bundle
from textlstm.testing.bundles import write_fake_bundle


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def seed_job(factory: sessionmaker[Session], bundle: Path, *, finish: bool = True) -> uuid.UUID:
    job_id = uuid.uuid4()
    with factory.begin() as s:
        mv, _ = register_bundle(session=s, path=bundle, name="sent", aliases=["production"])
        ensure_job(session=s, job_id=job_id, model_ref="sent", expected=3, metadata={"who": "test"})
        records = [
            PredictionRecord(0, "ok", "pos", 0.9, {"pos": 0.9, "neg": 0.1}, "a", None, 2.0),
            PredictionRecord(1, "error", error="empty text", external_id="b"),
            PredictionRecord(2, "ok", "neg", 0.6, {"pos": 0.4, "neg": 0.6}, "c, with comma"),
        ]
        save_predictions(
            session=s, job_id=job_id, records=records[: 3 if finish else 1], model_version_id=mv.id
        )
    return job_id


def test_status_results_wait(
    settings_env: str, session_factory: sessionmaker[Session], fake_bundle: Path
) -> None:
    job_id = seed_job(session_factory, fake_bundle)
    client = Client()
    st = client.status(str(job_id))
    assert (st.status, st.ok, st.errors, st.expected, st.model) == ("partial", 2, 1, 3, "sent@1")
    assert st.finished and st.metadata == {"who": "test"}
    rows = client.results(job_id)
    assert [(r.item_index, r.status, r.label) for r in rows] == [
        (0, "ok", "pos"),
        (1, "error", None),
        (2, "ok", "neg"),
    ]
    assert rows[0].probabilities == {"pos": 0.9, "neg": 0.1} and rows[0].model == "sent@1"
    assert client.wait(job_id, timeout=1).status == "partial"


def test_wait_times_out(
    settings_env: str, session_factory: sessionmaker[Session], fake_bundle: Path
) -> None:
    job_id = seed_job(session_factory, fake_bundle, finish=False)
    with pytest.raises(TimeoutError, match="1/3 items, running"):
        Client().wait(job_id, timeout=0.3, poll_interval=0.1)
    with pytest.raises(TimeoutError, match="no row"):
        Client().wait(uuid.uuid4(), timeout=0.2, poll_interval=0.1)


def test_results_command_formats(
    settings_env: str,
    session_factory: sessionmaker[Session],
    fake_bundle: Path,
    runner: CliRunner,
    tmp_path: Path,
) -> None:
    job_id = seed_job(session_factory, fake_bundle)
    table = runner.invoke(cli, ["results", str(job_id)])
    assert table.exit_code == 0, table.output
    assert "LABEL" in table.stdout and "empty text" in table.stdout and "0.9000" in table.stdout
    assert "3 of 3 items (job partial)" in table.stderr

    out = runner.invoke(cli, ["results", str(job_id), "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [r["external_id"] for r in rows] == ["a", "b", "c, with comma"]
    assert json.loads(rows[0]["probabilities"]) == {"pos": 0.9, "neg": 0.1}
    assert rows[1]["label"] == "" and rows[1]["error"] == "empty text"

    target = tmp_path / "out.jsonl"
    out = runner.invoke(cli, ["results", str(job_id), "--format", "jsonl", "-o", str(target)])
    assert out.exit_code == 0 and f"to {target}" in out.output
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [d["item_index"] for d in lines] == [0, 1, 2] and lines[2]["model"] == "sent@1"


@pytest.mark.parametrize("job_id", [str(uuid.UUID(int=7)), "not-a-uuid"])
def test_unknown_job_is_exit_1(settings_env: str, runner: CliRunner, job_id: str) -> None:
    for args in (["results", job_id], ["jobs", "show", job_id]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 1
        assert result.output.startswith("Error: job ") and "Traceback" not in result.output


def test_jobs_commands(
    settings_env: str, session_factory: sessionmaker[Session], fake_bundle: Path, runner: CliRunner
) -> None:
    assert runner.invoke(cli, ["jobs", "list"]).output.strip() == "no jobs"
    job_id = seed_job(session_factory, fake_bundle)
    listed = runner.invoke(cli, ["jobs", "list", "--status", "partial", "--limit", "5"])
    assert listed.exit_code == 0 and str(job_id) in listed.output and "3/3" in listed.output
    assert str(job_id) not in runner.invoke(cli, ["jobs", "list", "--status", "done"]).output
    shown = runner.invoke(cli, ["jobs", "show", str(job_id)])
    assert "2 ok, 1 errors" in shown.output and "sent -> sent@1" in shown.output
    doc = json.loads(runner.invoke(cli, ["jobs", "show", str(job_id), "--json"]).output)
    assert doc["status"] == "partial" and doc["metadata"] == {"who": "test"}
    assert runner.invoke(cli, ["jobs", "list", "--status", "bogus"]).exit_code == 2


def test_list_commands_print_json_lines(
    settings_env: str, session_factory: sessionmaker[Session], fake_bundle: Path, runner: CliRunner
) -> None:
    """`--json` is one object per row, the same fields as `show --json`, nothing when empty."""
    assert runner.invoke(cli, ["jobs", "list", "--json"]).output == ""
    assert runner.invoke(cli, ["models", "list", "--json"]).output == ""
    first = seed_job(session_factory, fake_bundle)
    second = seed_job(session_factory, fake_bundle, finish=False)

    out = runner.invoke(cli, ["jobs", "list", "--json"])
    assert out.exit_code == 0, out.output
    docs = [json.loads(line) for line in out.output.splitlines()]
    assert {d["job_id"] for d in docs} == {str(first), str(second)}
    done = next(d for d in docs if d["job_id"] == str(first))
    shown = json.loads(runner.invoke(cli, ["jobs", "show", str(first), "--json"]).output)
    for key in ("status", "model_ref", "expected", "ok", "errors", "expired", "submitted_at"):
        assert done[key] == shown[key], key
    assert done["metadata"] == {"who": "test"}
    one = runner.invoke(cli, ["jobs", "list", "--json", "--status", "partial"]).output
    assert [json.loads(line)["job_id"] for line in one.splitlines()] == [str(first)]

    listed = runner.invoke(cli, ["models", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    (model,) = [json.loads(line) for line in listed.output.splitlines()]
    assert model["ref"] == "sent@1" and model["labels"] == ["neg", "pos"]
    assert model["metrics"]["accuracy"] == 0.9 and len(model["bundle_sha256"]) == 64


def test_models_commands(settings_env: str, runner: CliRunner, tmp_path: Path) -> None:
    a = write_fake_bundle(tmp_path / "a", seed="a")
    b = write_fake_bundle(tmp_path / "b", seed="b")
    r = runner.invoke(
        cli,
        [
            "models",
            "register",
            str(a),
            "--name",
            "sent",
            "--alias",
            "production",
            "--tag",
            "team=nlp",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "registered sent@1" in r.output and "sent@production -> sent@1" in r.output
    r = runner.invoke(cli, ["models", "register", str(a), "--name", "sent"])
    assert r.exit_code == 0 and "already registered as sent@1" in r.output
    assert (
        "registered sent@2"
        in runner.invoke(cli, ["models", "register", str(b), "--name", "sent"]).output
    )

    listed = runner.invoke(cli, ["models", "list"]).output
    assert "production" in listed and "0.9000" in listed and listed.count("sent") == 2
    shown = runner.invoke(cli, ["models", "show", "sent"]).output
    assert "version          1" in shown and '"team": "nlp"' in shown
    assert (
        json.loads(runner.invoke(cli, ["models", "show", "sent@2", "--json"]).output)["version"]
        == 2
    )

    assert (
        "sent@production: 1 -> 2"
        in runner.invoke(cli, ["models", "alias", "sent", "2", "production"]).output
    )
    assert (
        json.loads(runner.invoke(cli, ["models", "show", "sent", "--json"]).output)["version"] == 2
    )
    r = runner.invoke(cli, ["models", "export", "sent@1", str(tmp_path / "exp")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "exp" / "weights.safetensors").read_bytes() == (
        a / "weights.safetensors"
    ).read_bytes()

    (b / "config.json").write_text("{}")
    r = runner.invoke(cli, ["models", "register", str(b), "--name", "x"])
    assert r.exit_code == 1 and r.output.startswith("Error: model bundle")
    assert "config.json has been modified" in r.output and len(r.output.splitlines()) == 1
    for args in (
        ["models", "show", "nope"],
        ["models", "alias", "sent", "9", "production"],
        ["models", "show", "sent@canary"],
    ):
        r = runner.invoke(cli, args)
        assert r.exit_code == 1 and r.output.startswith("Error: "), args
    assert (
        runner.invoke(
            cli, ["models", "register", str(a), "--name", "s", "--tag", "novalue"]
        ).exit_code
        == 2
    )


def test_db_commands(
    empty_db_url: str, runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from textlstm.settings import get_settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEXTLSTM_DATABASE_URL", empty_db_url)
    get_settings.cache_clear()
    try:
        assert "at revision base, behind" in runner.invoke(cli, ["db", "current"]).output
        from textlstm.store.migrate import head_revisions

        (head,) = head_revisions(empty_db_url)
        r = runner.invoke(cli, ["db", "upgrade"])
        assert r.exit_code == 0 and f"at revision {head}" in r.output
        assert "up to date" in runner.invoke(cli, ["db", "current"]).output
        assert "at revision base" in runner.invoke(cli, ["db", "downgrade", "base"]).output
        r = runner.invoke(cli, ["jobs", "list"])
        assert r.exit_code == 1 and "db upgrade" in r.output
    finally:
        get_settings.cache_clear()


def test_export_selects_by_model_time_and_score(
    settings_env: str,
    session_factory: sessionmaker[Session],
    fake_bundle: Path,
    runner: CliRunner,
    tmp_path: Path,
) -> None:
    first = seed_job(session_factory, fake_bundle)  # sent@1: scores 0.9, error, 0.6
    other = write_fake_bundle(tmp_path / "b", seed="b")
    second = uuid.uuid4()
    with session_factory.begin() as s:
        mv, _ = register_bundle(session=s, path=other, name="sent")  # sent@2
        ensure_job(session=s, job_id=second, model_ref="sent@2", expected=2)
        records = [
            PredictionRecord(0, "ok", "pos", 0.55, {"pos": 0.55, "neg": 0.45}, "x"),
            PredictionRecord(1, "ok", "neg", 0.99, {"pos": 0.01, "neg": 0.99}, "y"),
        ]
        save_predictions(session=s, job_id=second, records=records, model_version_id=mv.id)

    def export(*args: str) -> list[dict[str, object]]:
        out = runner.invoke(cli, ["results", "--format", "jsonl", *args])
        assert out.exit_code == 0, out.output
        return [json.loads(line) for line in out.stdout.splitlines()]

    every = export("--model", "sent")  # a bare name: every version
    assert {(d["job_id"], d["item_index"]) for d in every} == {
        *((str(first), i) for i in range(3)),
        *((str(second), i) for i in range(2)),
    }
    assert [d["external_id"] for d in export("--model", "sent@2")] == ["x", "y"]
    low = export("--max-score", "0.6")  # error rows have no score: left out
    assert sorted(d["external_id"] for d in low) == ["c, with comma", "x"]
    assert [d["external_id"] for d in export("--model", "sent@1", "--max-score", "0.6")] == [
        "c, with comma"
    ]
    assert export("--since", "2999-01-01") == []
    assert len(export("--since", "2000-01-01", "--until", "2999-01-01T00:00:00+00:00")) == 5
    assert [d["item_index"] for d in export(str(first), "--max-score", "0.95")] == [0, 2]

    target = tmp_path / "low.csv"
    out = runner.invoke(
        cli, ["results", "--max-score", "0.6", "--format", "csv", "-o", str(target)]
    )
    assert out.exit_code == 0 and f"2 items to {target}" in out.output
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert {r["job_id"] for r in rows} == {str(first), str(second)}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give a JOB_ID, or select"),
        (["--model", "sent", "--format", "table"], "--format table prints one job"),
        (["--since", "yesterday", "--format", "csv"], "is not an ISO 8601 date"),
        (["--max-score", "2", "--format", "csv"], "--max-score"),
        (["--model", "nope", "--format", "csv"], "model 'nope' is not registered"),
    ],
)
def test_export_mistakes_are_one_line(
    settings_env: str, runner: CliRunner, args: list[str], message: str
) -> None:
    out = runner.invoke(cli, ["results", *args])
    assert out.exit_code in (1, 2) and message in out.output, out.output
    assert "Traceback" not in out.output


def test_keyset_pages_cover_every_row_once(
    session_factory: sessionmaker[Session], fake_bundle: Path
) -> None:
    """Pages of 2 over three jobs of 3 rows: every row once, job by job in item order."""
    from textlstm.store.results import Selection, iter_selected

    jobs = [seed_job(session_factory, fake_bundle) for _ in range(3)]
    with session_factory() as s:
        got = [
            (p.job_id, p.item_index)
            for p in iter_selected(
                session=s, selection=Selection(since=datetime(2000, 1, 1, tzinfo=UTC)), page_size=2
            )
        ]
        one = [
            p.item_index
            for p in iter_selected(session=s, selection=Selection(job_id=jobs[1]), page_size=2)
        ]
    assert got == sorted((j, i) for j in jobs for i in range(3))  # uuid order = the key's
    assert one == [0, 1, 2]


def test_parquet_export_streams_row_groups(
    settings_env: str,
    session_factory: sessionmaker[Session],
    fake_bundle: Path,
    runner: CliRunner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pyarrow.parquet as pq

    from textlstm.cli import results as results_cli

    monkeypatch.setattr(results_cli, "PARQUET_ROWS", 2)  # 5 rows: groups of 2, 2 and 1
    jobs = [seed_job(session_factory, fake_bundle) for _ in range(2)]
    target = tmp_path / "all.parquet"
    out = runner.invoke(
        cli, ["results", "--model", "sent", "--format", "parquet", "-o", str(target)]
    )
    assert out.exit_code == 0 and f"6 items to {target}" in out.output, out.output
    meta = pq.ParquetFile(target).metadata
    assert meta.num_rows == 6 and meta.num_row_groups == 3
    rows = pq.read_table(target).to_pylist()
    assert {r["job_id"] for r in rows} == {str(j) for j in jobs}
    first = next(r for r in rows if r["job_id"] == str(jobs[0]) and r["item_index"] == 0)
    assert dict(first["probabilities"]) == {"pos": 0.9, "neg": 0.1} and first["model"] == "sent@1"
    error = next(r for r in rows if r["status"] == "error")
    assert error["score"] is None and error["probabilities"] is None

    empty = tmp_path / "none.parquet"
    out = runner.invoke(
        cli, ["results", "--since", "2999-01-01", "--format", "parquet", "-o", str(empty)]
    )
    assert out.exit_code == 0 and pq.read_table(empty).num_rows == 0  # the schema, no rows
    assert "--output" in runner.invoke(cli, ["results", str(jobs[0]), "--format", "parquet"]).output
