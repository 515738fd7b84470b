"""`textlstm-admin jobs cancel` and `Client.cancel` on real PostgreSQL, SQLite and Redis: one
line for each outcome, idempotent, the workers told through the Redis set, `jobs show` and
`status` report the cancelled items and jobs."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session, sessionmaker

from textlstm.cli import cli
from textlstm.store.jobs import ensure_job
from textlstm.store.predictions import PredictionRecord, save_predictions
from textlstm.wire.redis_layout import cancelled_job_ids, cancelled_key


def new_job(factory: sessionmaker[Session], expected: int, stored: int) -> uuid.UUID:
    job_id = uuid.uuid4()
    with factory.begin() as s:
        ensure_job(session=s, job_id=job_id, model_ref="topics", expected=expected)
        recs = [PredictionRecord(i, "ok", label="a", score=0.9) for i in range(stored)]
        if recs:
            save_predictions(session=s, job_id=job_id, records=recs)
    return job_id


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def test_cancel_then_again_then_show_and_status(
    settings_env: str,
    session_factory: sessionmaker[Session],
    redis_client: Any,
    queue_name: str,
) -> None:
    job = new_job(session_factory, 40, 15)
    done = new_job(session_factory, 2, 2)

    first = run("jobs", "cancel", str(job))
    assert first.exit_code == 0, first.output
    assert first.output == (
        f"job {job}: cancelled (running before); 25 of 40 item(s) stored as cancelled, "
        "15 classified item(s) kept\n"
    )
    assert cancelled_job_ids(redis_client, queue_name) == [str(job)]
    assert redis_client.ttl(cancelled_key(queue_name)) == -1  # trimmed by score, not expired

    again = run("jobs", "cancel", str(job))
    assert (again.exit_code, again.output) == (0, f"job {job}: already cancelled; nothing to do\n")
    final = run("jobs", "cancel", str(done))
    assert (final.exit_code, final.output) == (
        0,
        f"job {done}: already finished (done); nothing to cancel\n",
    )
    assert cancelled_job_ids(redis_client, queue_name) == [str(job)]  # a done job is not added

    shown = run("jobs", "show", str(job))
    assert "status     cancelled" in shown.output
    assert "15 ok, 25 errors (25 cancelled: never classified)" in shown.output
    doc = json.loads(run("jobs", "show", str(job), "--json").output)
    assert (doc["status"], doc["ok"], doc["errors"], doc["cancelled"]) == ("cancelled", 15, 25, 25)
    listed = run("jobs", "list", "--status", "cancelled", "--json")
    assert [json.loads(line)["job_id"] for line in listed.output.splitlines()] == [str(job)]

    status = run("status", "--timeout", "0.2")
    assert "jobs: 1 done, 1 cancelled" in status.output, status.output
    st = json.loads(run("status", "--json", "--timeout", "0.2").output)
    assert st["jobs"]["cancelled"] == 1


def test_unknown_and_malformed_job_ids_are_one_line(settings_env: str) -> None:
    missing = uuid.uuid4()
    r = run("jobs", "cancel", str(missing))
    assert r.exit_code == 1 and r.output == f"Error: job {missing} not found\n"
    bad = run("jobs", "cancel", "not-a-job")
    assert bad.exit_code == 1 and len(bad.output.splitlines()) == 1, bad.output
    assert "Traceback" not in bad.output


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_broker_down_cancels_in_sql_and_says_to_run_it_again(
    settings_env: str,
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from textlstm.settings import get_settings

    job = new_job(session_factory, 5, 1)
    monkeypatch.setenv("TEXTLSTM_BROKER_URL", "redis://127.0.0.1:1/0")  # nothing listens
    get_settings.cache_clear()
    r = run("jobs", "cancel", str(job))
    assert r.exit_code == 1 and len(r.output.splitlines()) == 1, r.output
    assert "cancelled in the database, but the workers could not be told" in r.output
    assert "run the cancel again" in r.output
    shown = json.loads(run("jobs", "show", str(job), "--json").output)
    assert (shown["status"], shown["cancelled"]) == ("cancelled", 4)


def test_client_cancel_returns_what_it_did(
    settings_env: str, session_factory: sessionmaker[Session]
) -> None:
    from textlstm.client import Client

    job = new_job(session_factory, 3, 0)
    first = Client().cancel(str(job))
    second = Client().cancel(job)
    assert (first.previous, first.status, first.cancelled, first.changed) == (
        "queued", "cancelled", 3, True
    )  # fmt: skip
    assert (second.cancelled, second.changed) == (0, False)
    assert Client().status(job).finished and Client().status(job).cancelled == 3
