"""`textlstm-admin jobs purge` through click's CliRunner, on both databases: the summary line,
--dry-run, --json, and one-line errors for a bad age or a status that is not final."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.retention import job_exists, stored_job
from textlstm.cli import cli


def test_purge_dry_run_then_purge(
    settings_env: str, session_factory: sessionmaker[Session]
) -> None:
    f = session_factory
    old = stored_job(f, expected=4, age=timedelta(days=40))
    old_partial = stored_job(f, expected=2, errors=1, age=timedelta(days=40))
    recent = stored_job(f, expected=3, age=timedelta(days=2))
    running = stored_job(f, expected=3, stored=1, age=timedelta(days=90))

    dry = CliRunner().invoke(cli, ["jobs", "purge", "--older-than", "30d", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert dry.output.startswith("would purge 2 job(s) and 6 prediction(s)")
    assert dry.output.count("\n") == 1 and job_exists(f, old)

    only = ["jobs", "purge", "--older-than", "30d", "--status", "partial", "--json"]
    doc = json.loads(CliRunner().invoke(cli, only).output)
    assert (doc["jobs"], doc["predictions"], doc["statuses"]) == (1, 2, ["partial"])
    assert doc["max_transaction_s"] >= 0 and doc["dry_run"] is False
    assert not job_exists(f, old_partial) and job_exists(f, old)

    future = CliRunner().invoke(cli, ["jobs", "purge", "--older-than", "2030-01-01T00:00"])
    assert future.exit_code == 1 and "in the future" in future.output
    result = CliRunner().invoke(cli, ["jobs", "purge", "--older-than", "3d", "--batch-rows", "2"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("purged 1 job(s) and 4 prediction(s)")
    assert not job_exists(f, old) and job_exists(f, recent) and job_exists(f, running)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--older-than", "soon"], "neither a duration like 30d"),
        (["--older-than", "30d", "--status", "running"], "cannot purge jobs with status running"),
        (["--older-than", "30d", "--status", "done,queued"], "only finished jobs are purged"),
    ],
)
def test_purge_mistakes_are_one_line(settings_env: str, args: list[str], says: str) -> None:
    result = CliRunner().invoke(cli, ["jobs", "purge", *args])
    assert result.exit_code == 1, result.output
    assert says in result.output and result.output.strip().count("\n") == 0
    assert "Traceback" not in result.output


def test_purge_on_an_unmigrated_database_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from textlstm.settings import get_settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEXTLSTM_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["jobs", "purge", "--older-than", "30d"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    assert "textlstm-admin db upgrade" in result.output
    assert result.output.strip().count("\n") == 0
