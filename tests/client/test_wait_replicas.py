"""TEXTLSTM_BROKER_WAIT_REPLICAS: the publisher's `WAIT` goes out on the connection that sent
the messages. Redis answers a WAIT on a connection that wrote nothing at once, with the
number of replicas connected, so a WAIT on the wrong connection would pass here; on the
right one it waits for a replica that has stopped acknowledging, and the send is refused.

A private master and replica (textlstm.testing.sentinel's nodes, reached directly by their
redis:// URL: WAIT is plain Redis, Sentinel only decides who is master)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.jobs import texts
from textlstm.errors import BrokerError
from textlstm.settings import Settings
from textlstm.testing.sentinel import OwnSentinelSet


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[OwnSentinelSet]:
    s = OwnSentinelSet(tmp_path / "nodes")
    try:
        yield s.start()
    finally:
        s.close()


def test_a_send_returns_only_once_a_replica_holds_it(nodes: OwnSentinelSet) -> None:
    from textlstm.client import Client

    settings = Settings(
        broker_url=nodes.master.url,
        queue="wait-test",
        broker_wait_replicas=1,
        broker_wait_timeout_ms=300,
        message_max_items=4,
        _env_file=None,  # type: ignore[call-arg]
    )
    client = Client(settings)
    client.submit(texts(8), model="topics", record_job=False)  # replica up: confirmed
    replica = nodes.replica.proc
    assert replica is not None
    replica.send_signal(signal.SIGSTOP)  # connected, but acknowledging nothing
    try:
        assert nodes.master.client().info("replication")["connected_slaves"] == 1
        with pytest.raises(BrokerError, match="only 0 of 1 replica"):
            client.submit(texts(8), model="topics", record_job=False)
        unwaited = settings.model_copy(update={"broker_wait_replicas": 0})
        Client(unwaited).submit(texts(8), model="topics", record_job=False)  # no wait
    finally:
        replica.send_signal(signal.SIGCONT)
    client.submit(texts(8), model="topics", record_job=False)
    assert nodes.master.client().llen("wait-test") == 8  # 4 sends of 2 messages
