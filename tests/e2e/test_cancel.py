"""Cancel, end to end with a real worker on PostgreSQL and SQLite and Redis: a 50,000-text job
cancelled after its first rows ends `cancelled` with every remaining item `cancelled`, the
worker is idle within seconds having run the model on few of them, and the next job is
unaffected."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.jobs import assert_exactly_once, row_count, submit, texts, wait_job
from tests.fixtures.workers import WorkerProc
from textlstm.client import Client
from textlstm.settings import Settings
from textlstm.store.models import Prediction

log = logging.getLogger(__name__)
PG = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
BOTH = pytest.mark.parametrize("db_url", ["postgresql", "sqlite"], indirect=True)
N = 50_000
MAX_BATCH = 2048  # Settings.worker_batch_max_items
REFRESH_S = 0.5  # Settings.worker_cancel_refresh_ms


def wait_idle(client: Any, queue: str, timeout: float) -> float:
    """Seconds until nothing of `queue` is waiting or delivered-but-unacked."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if client.llen(queue) == 0 and client.hlen("unacked") == 0:
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"{client.llen(queue)} queued, {client.hlen('unacked')} unacked")


@BOTH
def test_a_50000_text_job_cancelled_after_its_first_rows(
    redis_client: Any,
    workers: Callable[..., WorkerProc],
    topics: dict,
    e2e_settings: Settings,
    session_factory: sessionmaker[Session],
) -> None:
    w = workers()
    job = submit(e2e_settings, texts(N))
    deadline = time.monotonic() + 120
    while row_count(session_factory, job) == 0:
        assert time.monotonic() < deadline, "no row stored"
        time.sleep(0.02)
    wall_cancel = time.time()
    result = Client(e2e_settings).cancel(job)
    wall_told = time.time()  # SQL committed and the Redis set updated
    cancel_s = wall_told - wall_cancel
    assert result.changed and result.status == "cancelled"
    assert 0 < result.ok < N and result.cancelled == N - result.ok

    idle_s = wait_idle(redis_client, e2e_settings.queue, timeout=30)
    assert idle_s < 10, f"worker still busy {idle_s:.1f}s after the cancel"

    st = Client(e2e_settings).status(job)
    assert (st.status, st.ok, st.errors, st.cancelled) == (
        "cancelled", result.ok, N - result.ok, N - result.ok
    )  # fmt: skip
    assert_exactly_once(session_factory, {job: N}, ok=False)
    with session_factory() as s:
        by_status = dict(
            s.execute(
                select(Prediction.status, func.count())
                .where(Prediction.job_id == job)
                .group_by(Prediction.status)
            ).all()
        )
    assert by_status == {"ok": result.ok, "cancelled": N - result.ok}

    # The model ran on the stored items plus the batches under way when the cancel returned or
    # started before the worker's copy of the set was next refreshed (every 500 ms): on the
    # tiny model that can be a few 2,048-item batches. None may end later than the refresh
    # interval plus one batch (and a margin for this shared machine).
    records = w.batches()
    classified = sum(r.items for r in records)
    after = [r for r in records if r.time > wall_told]
    late_s = max((r.time for r in after), default=wall_told) - wall_told
    longest_s = max((r.forward_ms + r.db_ms) / 1000 for r in records)
    assert late_s < REFRESH_S + longest_s + 1.0, (late_s, longest_s)
    assert classified - result.ok < N - result.ok - MAX_BATCH  # most never reached the model
    assert "acked without classifying" in w.log()
    log.info(
        "cancel: %d classified before it, the cancel took %.2fs, %d classified after it but "
        "not stored (%d batch(es), the last ended %.2fs after it returned; longest batch "
        "%.2fs), queue drained %.2fs after it returned",
        result.ok, cancel_s, classified - result.ok, len(after), late_s, longest_s, idle_s,
    )  # fmt: skip

    # The next job is unaffected.
    nxt = submit(e2e_settings, texts(300, seed=5))
    st2 = wait_job(e2e_settings, nxt)
    assert (st2.status, st2.ok, st2.errors, st2.cancelled) == ("done", 300, 0, 0)


@PG
def test_a_job_cancelled_while_no_worker_runs_is_final_and_its_messages_are_acked_unrun(
    redis_client: Any,
    workers: Callable[..., WorkerProc],
    topics: dict,
    e2e_settings: Settings,
    session_factory: sessionmaker[Session],
) -> None:
    """The final status does not wait for a worker: the cancel ends the job. A worker started
    later acks its queued messages without running the model, then classifies the next job."""
    from textlstm.store.jobs import ensure_job

    inputs = texts(3000, seed=3)
    job = submit(e2e_settings, inputs)
    with session_factory.begin() as s:  # what a producer with the database URL records
        ensure_job(session=s, job_id=job, model_ref="topics", expected=len(inputs))
    result = Client(e2e_settings).cancel(job)
    assert (result.previous, result.status, result.cancelled) == ("queued", "cancelled", 3000)
    assert Client(e2e_settings).status(job).finished
    nxt = submit(e2e_settings, texts(100, seed=4))
    w = workers()
    st = wait_job(e2e_settings, nxt)
    assert (st.status, st.ok) == ("done", 100)
    wait_idle(redis_client, e2e_settings.queue, timeout=20)
    assert sum(r.items for r in w.batches()) == 100  # none of the cancelled job's 3,000
    assert_exactly_once(session_factory, {job: 3000}, ok=False)
    assert Client(e2e_settings).status(job).status == "cancelled"
