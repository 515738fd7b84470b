"""Cancel on amqp://, end to end on a RabbitMQ node the test starts itself, on PostgreSQL and
SQLite: there is no Redis set of cancelled jobs there, so the worker learns of a cancel from
SQL (the jobs cancelled recently, re-read every 500 ms). A 20,000-text job cancelled after its
first rows ends `cancelled` with every remaining item `cancelled`, the queues drain within
seconds with the model run on few of them, and the next job is unaffected (as
tests/e2e/test_cancel.py checks on Redis)."""

from __future__ import annotations

import logging
import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.jobs import assert_exactly_once, row_count, submit, texts, wait_job
from tests.fixtures.workers import Fleet
from textlstm.client import Client
from textlstm.settings import Settings
from textlstm.store.models import Prediction
from textlstm.testing.rabbitmq import OwnRabbitMQ
from textlstm.testing.waiting import wait_until
from textlstm.wire.queues import consume_order

log = logging.getLogger(__name__)
pytestmark = [pytest.mark.parametrize("db_url", ["postgresql", "sqlite"], indirect=True)]
N = 20_000
MAX_BATCH = 2048  # Settings.worker_batch_max_items
REFRESH_S = 0.5  # Settings.worker_cancel_refresh_ms


def test_a_large_job_cancelled_mid_run_over_amqp_stops_being_classified(
    rabbit_fleet: tuple[Settings, Fleet],
    own_rabbitmq: OwnRabbitMQ,
    session_factory: sessionmaker[Session],
) -> None:
    settings, fleet = rabbit_fleet
    w = fleet.start()
    job = submit(settings, texts(N, seed=171))
    deadline = time.monotonic() + 120
    while row_count(session_factory, job) == 0:
        assert time.monotonic() < deadline, "no row stored"
        time.sleep(0.02)
    result = Client(settings).cancel(job)
    wall_told = time.time()  # SQL committed: the workers read it from there on amqp://
    assert result.changed and result.status == "cancelled"
    assert 0 < result.ok < N and result.cancelled == N - result.ok

    def drained() -> bool:
        queues = own_rabbitmq.queues()  # `messages` counts ready and unacked
        return all(int(queues[q]["messages"]) == 0 for q in consume_order(settings.queue))

    wait_until(drained, 60, "the queues drained after the cancel")

    st = Client(settings).status(job)
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
    # started before the worker's next read of SQL (every 500 ms); none ended later than that
    # interval plus one batch (and a margin for a shared machine), and most items never
    # reached the model.
    records = w.batches()
    classified = sum(r.items for r in records)
    after = [r for r in records if r.time > wall_told]
    late_s = max((r.time for r in after), default=wall_told) - wall_told
    longest_s = max((r.forward_ms + r.db_ms) / 1000 for r in records)
    assert late_s < REFRESH_S + longest_s + 1.0, (late_s, longest_s)
    assert classified - result.ok < N - result.ok - MAX_BATCH, (classified, result.ok)
    assert "acked without classifying" in w.log()
    log.info(
        "amqp cancel: %d stored before it, %d classified after it but not stored, the last "
        "batch ended %.2fs after it returned",
        result.ok, classified - result.ok, late_s,
    )  # fmt: skip

    nxt = submit(settings, texts(300, seed=172))
    st2 = wait_job(settings, nxt, timeout=120)
    assert (st2.status, st2.ok, st2.errors, st2.cancelled) == ("done", 300, 0, 0)
    assert w.alive()
