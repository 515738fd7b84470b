"""worker.transport's Sentinel variant against a real Sentinel set (its own master, replica and
three Sentinels on free loopback ports): the channel is kombu's Sentinel channel with the same
atomic pop, so a message is recorded as delivered in the step that takes it, and a consumer
SIGKILLed at any moment loses nothing, as on plain Redis (tests/worker/test_transport.py)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Consumer, Producer, Queue

from tests.fixtures.transport import connect, kill_mid_flow, unacked_keys
from textlstm.testing.sentinel import OwnSentinelSet
from textlstm.wire.messages import TASK_NAME

ROOT = Path(__file__).resolve().parents[2]
SENTINEL = "worker.transport:SentinelTransport"


@pytest.fixture(scope="module")
def sentinel_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnSentinelSet]:
    s = OwnSentinelSet(tmp_path_factory.mktemp("sentinel"))
    try:
        yield s.start()
    finally:
        s.close()


def publish(s: OwnSentinelSet, queue: str, n: int) -> None:
    """n classify-task messages through kombu's own Sentinel transport (any producer's)."""
    with Connection(s.url, transport_options=s.transport_options) as conn:
        producer = Producer(conn.channel())
        for i in range(n):
            producer.publish(
                [[{"i": i}], {}, {"callbacks": None, "errbacks": None, "chain": None,
                                  "chord": None}],
                routing_key=queue, declare=[Queue(queue)], serializer="json",
                headers={"task": TASK_NAME, "id": f"task-{i}"},
            )  # fmt: skip


def test_the_pop_records_each_delivery_on_the_master(
    sentinel_set: OwnSentinelSet, queue_name: str
) -> None:
    from worker.transport import SentinelChannel

    publish(sentinel_set, queue_name, 10)
    master = sentinel_set.client()
    held: list[tuple[int, bool]] = []
    with connect(sentinel_set.url, queue_name, SENTINEL, sentinel_set.transport_options) as conn:
        channel = conn.channel()
        assert isinstance(channel, SentinelChannel)
        assert channel.pop_command([queue_name])[0] == "EVAL"  # the atomic pop, not BRPOP
        channel.basic_qos(0, 4, False)

        def on_message(body: Any, message: Any) -> None:
            unacked = unacked_keys(queue_name)["unacked_key"]
            held.append((body[0][0]["i"], bool(master.hexists(unacked, message.delivery_tag))))
            message.ack()

        with Consumer(channel, [Queue(queue_name)], callbacks=[on_message], accept=["json"]):
            deadline = time.monotonic() + 20
            while len(held) < 10 and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=0.2)
                except TimeoutError:
                    pass
    assert sorted(i for i, _ in held) == list(range(10))
    assert all(recorded for _, recorded in held), held
    assert master.hlen(unacked_keys(queue_name)["unacked_key"]) == 0
    master.close()


def restore_all(s: OwnSentinelSet, queue: str) -> None:
    """What the visibility-timeout sweep does for a dead consumer, at once."""
    with connect(s.url, queue, SENTINEL, s.transport_options) as conn:
        channel = conn.channel()
        for tag in channel.client.hkeys(channel.unacked_key):
            channel.qos.restore_by_tag(tag.decode())


def test_sigkill_at_random_moments_loses_no_message(
    sentinel_set: OwnSentinelSet, queue_name: str, tmp_path: Path
) -> None:
    n = 2000
    publish(sentinel_set, queue_name, n)
    master = sentinel_set.client()
    out = tmp_path / "seen.txt"
    rng = random.Random(17)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    options = json.dumps(sentinel_set.transport_options)
    cmd = [sys.executable, "-m", "tests.worker.killable_consumer", sentinel_set.url, queue_name,
           str(out), SENTINEL, options]  # fmt: skip
    kills = 0
    for _ in range(10):
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
        kill_mid_flow(proc, out, rng, lo=n // 20, hi=n // 8)
        kills += 1
        restore_all(sentinel_set, queue_name)
        if master.llen(queue_name) == 0:
            break
    assert kills >= 3, "the consumer drained everything too fast to be killed mid-flow"
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        unacked = unacked_keys(queue_name)["unacked_key"]
        while master.llen(queue_name) or master.hlen(unacked):
            assert time.monotonic() < deadline, "the last consumer did not finish"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    seen = {int(line) for line in out.read_text().split()}
    assert seen == set(range(n)), f"lost {n - len(seen)} message(s) over {kills} kills"
    master.close()
