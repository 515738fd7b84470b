"""A Sentinel broker that is misconfigured or does not answer is one line at start-up, naming
the settings, from every command: `status`, `worker` (and a hand-started Celery worker),
`submit` and `jobs requeue`; no traceback, no password, no minute of connection retries.

Real subprocesses with a controlled environment; the Sentinels are free loopback ports nothing
listens on.
"""

from __future__ import annotations

import datetime
import os
import sys
import uuid
from pathlib import Path

import pytest

from tests.fixtures.cli_runs import PW, ROOT, admin, run
from textlstm.errors import EX_CONFIG
from textlstm.testing.ports import free_port

NOBODY = "none of the Sentinels"


def sentinel_env(tmp_path: Path, *, options: str = '{"master_name": "mymaster"}') -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEXTLSTM_")}
    ports = (free_port(), free_port())
    env["TEXTLSTM_BROKER_URL"] = ";".join(f"sentinel://:{PW}@127.0.0.1:{p}/0" for p in ports)
    env["TEXTLSTM_BROKER_TRANSPORT_OPTIONS"] = options
    env["TEXTLSTM_DATABASE_URL"] = f"sqlite:///{tmp_path / 'jobs.db'}"
    return env


def the_line(out: str, fragment: str) -> str:
    (line,) = [x for x in out.splitlines() if fragment in x]
    assert "TEXTLSTM_BROKER_URL" in line and "TEXTLSTM_BROKER_TRANSPORT_OPTIONS" in line, line
    return line


@pytest.mark.parametrize("args", [["status"], ["jobs", "list"], ["worker", "-c", "1"]])
def test_no_master_name_is_one_line_from_every_command(args: list[str], tmp_path: Path) -> None:
    code, out = admin(args, tmp_path, sentinel_env(tmp_path, options="{}"))
    assert code == 1
    assert out.strip().splitlines() == [
        "Error: TEXTLSTM_BROKER_TRANSPORT_OPTIONS: a sentinel:// broker (TEXTLSTM_BROKER_URL) "
        'needs the name the Sentinels monitor its master under: {"master_name": "mymaster"}'
    ]


def test_status_says_the_sentinels_do_not_answer(tmp_path: Path) -> None:
    code, out = admin(["status"], tmp_path, sentinel_env(tmp_path))
    assert code == 2  # status reports every source; the broker's is one line
    line = the_line(out, NOBODY)
    assert line.startswith("queues, workers: unavailable (cannot reach the Redis master")


def test_worker_stops_at_once(tmp_path: Path) -> None:
    code, out = admin(["worker", "-c", "1", "--device", "cpu"], tmp_path, sentinel_env(tmp_path))
    assert code == 1
    assert out.strip().splitlines()[-1].startswith("Error: broker sentinel://:***@127.0.0.1:")
    the_line(out, NOBODY)


def test_hand_started_celery_worker_exits_ex_config(tmp_path: Path) -> None:
    env = {**sentinel_env(tmp_path), "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "--pool", "solo"]
    code, out = run(argv, tmp_path, env)
    assert code == EX_CONFIG
    assert the_line(out, NOBODY).startswith("textlstm worker: broker sentinel://:***@")


def test_submit_says_it_at_once(tmp_path: Path) -> None:
    env = sentinel_env(tmp_path)
    del env["TEXTLSTM_DATABASE_URL"]  # no job row to write: the broker is the first stop
    (tmp_path / "in.csv").write_text("text\nhello\n")
    code, out = admin(["submit", "in.csv", "--model", "topics"], tmp_path, env)
    assert code == 1
    assert the_line(out, NOBODY).startswith("Error: broker sentinel://:***@")


def test_jobs_requeue_says_it(tmp_path: Path) -> None:
    env = sentinel_env(tmp_path)
    assert admin(["db", "upgrade"], tmp_path, env)[0] == 0
    from textlstm.store.db import session_scope
    from textlstm.store.jobs import ensure_job

    job = uuid.uuid4()
    with session_scope(env["TEXTLSTM_DATABASE_URL"]) as session:
        ensure_job(session=session, job_id=job, model_ref="topics", expected=3, metadata=None,
                   submitted_at=datetime.datetime.now(datetime.UTC))  # fmt: skip
    code, out = admin(["jobs", "requeue", str(job)], tmp_path, env)
    assert code == 1
    assert the_line(out, NOBODY).startswith(
        f"Error: could not read the broker's copies of job {job}"
    )


def test_dead_letters_says_it(tmp_path: Path) -> None:
    code, out = admin(["dead-letters", "list"], tmp_path, sentinel_env(tmp_path))
    assert code == 1
    the_line(out, NOBODY)
