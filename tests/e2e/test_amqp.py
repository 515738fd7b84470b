"""Issue 17 deliverable 2, first slice: RabbitMQ (amqp://) end to end, on a node the test starts
itself on free loopback ports (`own_rabbitmq`; never the machine's shared RabbitMQ).

A worker classifies a job submitted with `Client` over amqp://; every item has exactly one row;
the three priority queues are durable quorum queues, declared by the project (the client's
first publish declares them, and the worker declares the same arguments, which RabbitMQ would
refuse if they differed), and nothing is left in them.
"""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.jobs import assert_exactly_once, submit, texts, wait_job
from tests.fixtures.workers import Fleet
from textlstm.ops.fleet import collect
from textlstm.settings import Settings
from textlstm.testing.rabbitmq import OwnRabbitMQ
from textlstm.testing.waiting import wait_until
from textlstm.wire.queues import consume_order

pytestmark = [pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


def test_job_over_amqp_lands_once_in_quorum_queues(
    rabbit_fleet: tuple[Settings, Fleet],
    own_rabbitmq: OwnRabbitMQ,
    session_factory: sessionmaker[Session],
) -> None:
    settings, fleet = rabbit_fleet
    n = 300
    job = submit(settings, texts(n, seed=170), per_message=4)  # 75 confirmed publishes
    assert own_rabbitmq.depth(settings.queue) == 75  # confirmed: on the queue when submit returns
    # `textlstm-admin status` reads the same depths (passive declare); unacked is Redis-only.
    st = collect(settings, timeout=0.5)
    assert "queues" not in st.errors, st.errors
    assert st.queues == {
        f"{settings.queue}.high": 0,
        settings.queue: 75,
        f"{settings.queue}.bulk": 0,
    }
    assert st.unacked is None
    # The producer's channel is in confirm mode (publisher confirms): its pooled connection
    # is still open.
    assert ["true"] in own_rabbitmq.rows("channels", "confirm")
    w = fleet.start("--batch-max-items", "32")
    # One consumer per priority queue, each with its own prefetch (per-consumer QoS: quorum
    # queues take no global QoS), of at least the batch size.
    consumers = {
        q: int(p) for q, p in own_rabbitmq.rows("consumers", "queue_name", "prefetch_count")
    }
    ours = {q: p for q, p in consumers.items() if not q.endswith(".pidbox")}  # remote control
    assert set(ours) == set(consume_order(settings.queue))
    assert all(p >= 32 for p in ours.values()), ours
    st = wait_job(settings, job, timeout=120)
    assert (st.status, st.ok) == ("done", n)
    assert_exactly_once(session_factory, {job: n})
    wait_until(lambda: own_rabbitmq.depth(settings.queue) == 0, 30, "the queue drained")
    queues = own_rabbitmq.queues()
    for name in consume_order(settings.queue):
        assert queues[name]["type"] == "quorum" and queues[name]["durable"] == "true", name
    assert max(w.batch_sizes()) > 4, "the batcher joins messages into micro-batches on AMQP"
    assert w.alive()
