"""Poison-message quarantine on amqp:// against a real worker and the test's own RabbitMQ node,
as tests/faults/test_poison.py does on Redis: a message that kills the worker process every time
it is handled (the test-only `TEXTLSTM_WORKER_TEST_CRASH_TEXT` hook, a SIGKILL as the OOM killer
would send) is delivered `worker_max_deliveries` times, then moved to the dead-letter queue with
the reason and recorded on its job, while every valid message queued around it is stored
exactly once and the queues drain.

What makes it hold on RabbitMQ: the quorum queue counts each return in `x-delivery-count`
(`x-delivery-limit` and the dead-letter queue are declared with it), and a worker takes
messages delivered before with a prefetch of 1 (`worker.strategy.Prefetch`), so the innocent
messages RabbitMQ had sent behind the poison one are not counted with it at each death.

Items of a batch whose SQL write failed for good go to the same dead-letter queue (stage
`store`), as they go to the dead-letter list on Redis.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.jobs import (
    assert_exactly_once,
    assert_operator_sees_poison,
    poison_between_two_jobs,
    submit,
    texts,
    wait_job,
)
from tests.fixtures.workers import Fleet
from textlstm.broker_options import amqp_dead_letter_queue
from textlstm.ops import amqp_deadletters
from textlstm.settings import Settings
from textlstm.testing.processes import paused
from textlstm.testing.rabbitmq import OwnRabbitMQ
from textlstm.testing.waiting import wait_until
from textlstm.wire.queues import consume_order

pytestmark = [pytest.mark.faults, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

CRASH = "__this text kills the worker process__"


def test_a_message_that_kills_the_worker_is_dead_lettered_after_three_deliveries(
    topics: dict,
    e2e_settings: Settings,
    worker_env: dict[str, str],
    own_rabbitmq: OwnRabbitMQ,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = e2e_settings.model_copy(update={"broker_url": own_rabbitmq.url})
    env = {**worker_env, "TEXTLSTM_BROKER_URL": own_rabbitmq.url,
           "TEXTLSTM_WORKER_TEST_CRASH_TEXT": CRASH}  # fmt: skip
    fleet = Fleet(env, tmp_path)
    try:
        poison, w = poison_between_two_jobs(fleet, settings, session_factory, CRASH, seed=180)
        (record,) = amqp_deadletters.read(settings.broker_url, settings.queue, {})
        assert (record.stage, record.deliveries) == ("poison", 3)
        assert record.readable_job_id() == str(poison)
        assert record.list == settings.queue
        for name in consume_order(settings.queue):
            wait_until(lambda q=name: own_rabbitmq.depth(q) == 0, 30, f"{name} drained")
        assert own_rabbitmq.depth(amqp_dead_letter_queue(settings.queue)) == 1  # read, put back
        assert w.alive()

        # The operator sees it, in status and in the dead-letter commands.
        assert_operator_sees_poison(monkeypatch, own_rabbitmq.url, settings, record.id, poison)
    finally:
        fleet.close()


def test_a_part_whose_write_fails_for_good_goes_to_the_dead_letter_queue(
    rabbit_fleet: tuple[Settings, Fleet],
    own_rabbitmq: OwnRabbitMQ,
    session_factory: sessionmaker[Session],
) -> None:
    """As on Redis (tests/security/test_hostile_worker.py): two messages of one new job id that
    disagree on the total land in one micro-batch; the first is stored, the other's items get
    no row and are published to the dead-letter queue (stage `store`) with why, and every
    neighbour is stored once."""
    from kombu import Connection

    from tests.fixtures.jobs import msg, task_body
    from textlstm.wire.messages import TASK_NAME

    settings, fleet = rabbit_fleet
    w = fleet.start("--batch-max-items", "4096", "--batch-max-wait-ms", "2000")
    job = uuid.uuid4()

    def publish(body: bytes) -> None:  # a foreign producer, to the queue the worker declared
        with Connection(settings.broker_url, connect_timeout=5) as conn:
            conn.Producer().publish(
                body, exchange="", routing_key=settings.queue, content_type="application/json",
                content_encoding="utf-8", headers={"task": TASK_NAME, "id": str(uuid.uuid4())},
            )  # fmt: skip

    with paused(w):
        before = submit(settings, texts(30, seed=182), per_message=3)
        publish(task_body(msg(job, [{"index": 0, "text": "a"}, {"index": 1, "text": "b"}])))
        publish(task_body(msg(job, [{"index": 4, "text": "c"}], total=5)))
        after = submit(settings, texts(30, seed=183), per_message=3)
    for j in (before, after):
        assert wait_job(settings, j, timeout=90).status == "done"
    assert_exactly_once(session_factory, {before: 30, after: 30, job: 2})
    records = amqp_deadletters.read(settings.broker_url, settings.queue, {})
    assert [(r.stage, r.job_id) for r in records] == [("store", str(job))]
    assert "already used by a job of 2 items" in records[0].reason
    assert records[0].body is not None and records[0].body["total"] == 5
    for name in consume_order(settings.queue):
        wait_until(lambda q=name: own_rabbitmq.depth(q) == 0, 30, f"{name} drained")
    assert w.alive()
