"""Retention with real workers on PostgreSQL (issue 18, deliverable 4).

- A purge of old finished jobs runs, in many short transactions, while a real worker stores a
  big job: every row of that job is there, it finishes `done`, and the old jobs are gone. The
  cutoff is taken before the job is submitted, so the job also becomes final while purges
  with that cutoff run, and only the DELETE's own re-check keeps it.
- A worker started with TEXTLSTM_RETENTION_PURGE_AFTER purges an old job by itself, keeps a
  recent one, and goes on classifying.
- The fleet's lease: a second process asking within the interval does not purge.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.jobs import submit, texts, wait_job
from tests.fixtures.retention import job_exists, rows_of, stored_job
from tests.fixtures.workers import WorkerProc
from textlstm.ops.retention import PurgeReport, purge, purge_if_due
from textlstm.settings import Settings
from textlstm.store.jobs import get_job

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
OLD = timedelta(days=40)


def test_purge_in_batches_while_a_worker_writes(
    workers: Callable[..., WorkerProc],
    topics: dict,
    e2e_settings: Settings,
    session_factory: sessionmaker[Session],
) -> None:
    f = session_factory
    old = [stored_job(f, expected=6000, age=OLD) for _ in range(4)]
    old += [stored_job(f, expected=2, errors=1, age=OLD) for _ in range(100)]
    old_rows = 4 * 6000 + 100 * 2
    cutoff = datetime.now(UTC) - timedelta(seconds=1)
    w = workers()
    n = 12_000
    job = submit(e2e_settings, texts(n, seed=5), per_message=64)
    w.wait_for(lambda _: rows_of(f, job) > 0, 60, "the job's first rows")

    # Between transactions, note whether the worker's job was still running: the overlap.
    overlapped: list[str] = []

    def note() -> bool:
        with f() as s:
            overlapped.append(get_job(session=s, job_id=job).status)
        return False

    reports: list[PurgeReport] = []
    report = purge(session_factory=f, cutoff=cutoff, batch_rows=500, should_stop=note)
    reports.append(report)
    # Keep purging with the same cutoff until the job is final, and once more after.
    while get_status(f, job) not in ("done", "partial", "failed"):
        reports.append(purge(session_factory=f, cutoff=cutoff, batch_rows=500))
        time.sleep(0.05)
    reports.append(purge(session_factory=f, cutoff=cutoff, batch_rows=500))

    st = wait_job(e2e_settings, job, timeout=120)
    assert (st.status, st.ok, st.errors) == ("done", n, 0)
    assert rows_of(f, job) == n
    assert "running" in overlapped, "the purge must overlap the worker's writes"
    assert report.jobs == len(old) and report.predictions == old_rows
    assert not any(job_exists(f, j) for j in old)
    assert sum(r.jobs for r in reports) == len(old)
    assert report.transactions >= old_rows // 500 and report.max_transaction_s < 5


def get_status(f: sessionmaker[Session], job: Any) -> str:
    with f() as s:
        return get_job(session=s, job_id=job).status


def test_a_worker_purges_by_itself_when_told_to(
    workers: Callable[..., WorkerProc],
    topics: dict,
    e2e_settings: Settings,
    session_factory: sessionmaker[Session],
) -> None:
    f = session_factory
    old = stored_job(f, expected=30, age=timedelta(hours=3))
    recent = stored_job(f, expected=5, age=timedelta(minutes=10))
    env = {"TEXTLSTM_RETENTION_PURGE_AFTER": "1h", "TEXTLSTM_RETENTION_PURGE_INTERVAL_S": "1"}
    w = workers(env=env)
    w.wait_for(lambda _: not job_exists(f, old), 30, "the periodic purge of the old job")
    assert job_exists(f, recent) and rows_of(f, recent) == 5
    job = submit(e2e_settings, texts(50))
    assert wait_job(e2e_settings, job, timeout=60).status == "done"
    assert "retention: purged 1 job(s) and 30 prediction(s)" in w.log()


def test_one_purge_per_interval_across_the_fleet(
    e2e_settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    f = session_factory
    settings = e2e_settings.model_copy(
        update={"retention_purge_after": timedelta(days=30), "retention_purge_interval_s": 30}
    )
    old = stored_job(f, expected=3, age=OLD)
    off = e2e_settings.model_copy(update={"retention_purge_after": None})
    assert purge_if_due(off, session_factory=f) is None and job_exists(f, old)

    results: list[PurgeReport | None] = []
    threads = [
        threading.Thread(target=lambda: results.append(purge_if_due(settings, session_factory=f)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [r for r in results if r is not None]
    assert len(done) == 1 and (done[0].jobs, done[0].predictions) == (1, 3)
    assert not job_exists(f, old)
