"""Issue 17 deliverable 2: a worker SIGKILLed, or the RabbitMQ node restarted, mid-run on
amqp:// (durable quorum queues, the test's own node) loses nothing and stores nothing twice.
RabbitMQ requeues a consumer's unacked messages as soon as its connection drops; a redelivered
message whose items were already committed is stored once (rows are keyed by job and item
index)."""

from __future__ import annotations

import signal

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.jobs import assert_exactly_once, row_count, submit, texts, wait_job
from tests.fixtures.workers import Fleet
from textlstm.settings import Settings
from textlstm.testing.rabbitmq import OwnRabbitMQ
from textlstm.testing.waiting import wait_until
from textlstm.wire.queues import consume_order

pytestmark = [pytest.mark.faults, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


def test_sigkill_mid_run_on_amqp_every_item_once(
    rabbit_fleet: tuple[Settings, Fleet],
    own_rabbitmq: OwnRabbitMQ,
    session_factory: sessionmaker[Session],
) -> None:
    settings, fleet = rabbit_fleet
    n = 8000
    job = submit(settings, texts(n, seed=171), per_message=4)  # 2,000 messages
    victim = fleet.start("--batch-max-items", "16")
    wait_until(lambda: row_count(session_factory, job) >= 200, 120, "the job under way")
    fleet.signal(victim, signal.SIGKILL)
    assert victim.proc is not None and victim.proc.wait(10) == -signal.SIGKILL
    assert row_count(session_factory, job) < n, "the kill must land mid-run"
    survivor = fleet.start("--batch-max-items", "16")
    st = wait_job(settings, job, timeout=180)
    assert (st.status, st.ok) == ("done", n)
    assert_exactly_once(session_factory, {job: n})
    for name in consume_order(settings.queue):
        wait_until(lambda q=name: own_rabbitmq.depth(q) == 0, 30, f"{name} drained")
    assert survivor.alive()


def test_rabbitmq_restart_mid_run_every_item_once(
    rabbit_fleet: tuple[Settings, Fleet],
    own_rabbitmq: OwnRabbitMQ,
    session_factory: sessionmaker[Session],
) -> None:
    settings, fleet = rabbit_fleet
    n = 8000
    job = submit(settings, texts(n, seed=172), per_message=4)  # 2,000 messages
    worker = fleet.start("--batch-max-items", "16")
    wait_until(lambda: row_count(session_factory, job) >= 200, 120, "the job under way")
    own_rabbitmq.stop()  # rabbitmqctl stop: the node goes down with the worker connected
    assert row_count(session_factory, job) < n, "the restart must land mid-run"
    own_rabbitmq.start()  # same name, ports and data: the quorum queues come back
    st = wait_job(settings, job, timeout=240)
    assert (st.status, st.ok) == ("done", n)
    assert_exactly_once(session_factory, {job: n})
    for name in consume_order(settings.queue):
        wait_until(lambda q=name: own_rabbitmq.depth(q) == 0, 60, f"{name} drained")
    assert worker.alive()
