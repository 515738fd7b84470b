"""Issue 17 deliverable 2: high → normal → bulk on amqp:// (the test's own RabbitMQ node).

A backlog larger than the worker's prefetch is queued before any worker runs: bulk first, then
normal, then high (the worst order: the backlog that must wait was there first). One worker
then starts, and the order in which the rows are committed is read back from SQL (a batch's
rows share one `created_at`). Every high row must be committed no later than the first normal
or bulk row, and every normal row no later than the first bulk row.

Measured before the worker read ahead (docs/operations.md "Priority order on AMQP"): with 600
messages a priority and a prefetch of 256, the first 2,400 rows were 1,024 high, 1,024 normal
and 352 bulk.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.jobs import assert_exactly_once, texts, wait_job
from tests.fixtures.workers import Fleet
from textlstm.settings import Settings
from textlstm.testing.rabbitmq import OwnRabbitMQ
from textlstm.testing.waiting import wait_until
from textlstm.wire.queues import consume_order

pytestmark = [pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

MESSAGES = 400  # per priority, above the worker's prefetch of 256 messages per queue
PER_MESSAGE = 4


def commit_times(factory: sessionmaker[Session], job: uuid.UUID) -> list[datetime]:
    from textlstm.store.models import Prediction

    with factory() as s:
        return list(s.scalars(select(Prediction.created_at).where(Prediction.job_id == job)))


def test_high_before_normal_before_bulk_beyond_the_prefetch(
    rabbit_fleet: tuple[Settings, Fleet],
    own_rabbitmq: OwnRabbitMQ,
    session_factory: sessionmaker[Session],
) -> None:
    from textlstm.client import Client

    settings, fleet = rabbit_fleet
    client = Client(settings.model_copy(update={"message_max_items": PER_MESSAGE}))
    n = MESSAGES * PER_MESSAGE
    jobs = {}
    for seed, priority in enumerate(("bulk", "normal", "high")):  # the lowest queued first
        jobs[priority] = client.submit(
            texts(n, seed=180 + seed), model="topics", priority=priority, record_job=False
        )
    for queue in consume_order(settings.queue):
        assert own_rabbitmq.depth(queue) == MESSAGES
    fleet.start("--batch-max-items", "32")
    for job in jobs.values():
        st = wait_job(settings, job, timeout=240)
        assert (st.status, st.ok) == ("done", n)
    assert_exactly_once(session_factory, dict.fromkeys(jobs.values(), n))
    times = {p: sorted(commit_times(session_factory, job)) for p, job in jobs.items()}
    everything = sorted(t for ts in times.values() for t in ts)
    first_lower = min(times["normal"][0], times["bulk"][0])
    high_ahead = sum(t <= first_lower for t in times["high"])
    lower_ahead = sum(t < times["high"][-1] for t in times["normal"] + times["bulk"])
    assert times["high"][-1] <= first_lower, (
        f"{lower_ahead} normal/bulk row(s) committed before the last high row (of "
        f"{len(everything)}); {high_ahead} high row(s) before the first normal/bulk one"
    )
    assert times["normal"][-1] <= times["bulk"][0], (
        f"{sum(t < times['normal'][-1] for t in times['bulk'])} bulk row(s) committed before "
        "the last normal row"
    )
    for queue in consume_order(settings.queue):
        wait_until(lambda q=queue: own_rabbitmq.depth(q) == 0, 30, f"{queue} drained")
