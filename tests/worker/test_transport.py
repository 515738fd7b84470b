"""worker.transport against the real Redis: the pop records a message as delivered in the same
atomic step, so a consumer SIGKILLed at any moment loses nothing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection, Consumer, Producer, Queue

TRANSPORT = "worker.transport:Transport"
ROOT = Path(__file__).resolve().parents[2]


def connect(url: str, queue: str, transport: str = TRANSPORT) -> Connection:
    """Our transport with this test's own unacked hash and index (named after the queue, so
    the queue fixture removes them and no other test's leftovers are counted)."""
    return Connection(url, transport=transport, transport_options=unacked_keys(queue))


def unacked_keys(queue: str) -> dict[str, str]:
    return {
        "unacked_key": f"{queue}.unacked",
        "unacked_index_key": f"{queue}.unacked_index",
        "unacked_mutex_key": f"{queue}.unacked_mutex",
    }


def publish(url: str, queue: str, n: int, *, priority: int | None = None) -> None:
    with Connection(url) as conn:
        producer = Producer(conn.channel())
        for i in range(n):
            producer.publish(
                {"i": i},
                routing_key=queue,
                declare=[Queue(queue, max_priority=9 if priority is not None else None)],
                serializer="json",
                priority=priority,
            )


def drain(url: str, queue: str, *, prefetch: int = 64, seconds: float = 1.5) -> list[Any]:
    """Consume for `seconds` with our transport, acking everything; return the bodies."""
    got: list[Any] = []
    with connect(url, queue) as conn:
        channel = conn.channel()
        channel.basic_qos(0, prefetch, False)

        def on_message(body: Any, message: Any) -> None:
            got.append(body)
            message.ack()

        with Consumer(channel, [Queue(queue)], callbacks=[on_message], accept=["json"]):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                try:
                    conn.drain_events(timeout=0.2)
                except TimeoutError:
                    pass
    return got


def restore_all(url: str, queue: str) -> int:
    """What the visibility-timeout sweep does for a dead consumer, at once."""
    with connect(url, queue) as conn:
        channel = conn.channel()
        tags = channel.client.hkeys(channel.unacked_key)
        for tag in tags:
            channel.qos.restore_by_tag(tag.decode())
        return len(tags)


def test_delivered_messages_are_in_the_unacked_hash_before_the_consumer_sees_them(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    publish(redis_url, queue_name, 10)
    seen: list[tuple[int, int, bool]] = []
    with connect(redis_url, queue_name) as conn:
        channel = conn.channel()
        channel.basic_qos(0, 4, False)

        def on_message(body: Any, message: Any) -> None:
            tag = message.delivery_tag
            unacked = f"{queue_name}.unacked"
            seen.append(
                (
                    redis_client.llen(queue_name),
                    redis_client.hlen(unacked),
                    redis_client.hexists(unacked, tag),
                )
            )

        with Consumer(channel, [Queue(queue_name)], callbacks=[on_message], accept=["json"]):
            while len(seen) < 4:
                conn.drain_events(timeout=2)
        # Prefetch 4: one script call took four messages, all recorded before the first
        # callback ran; nothing is acked, so nothing more is taken.
        assert [s[2] for s in seen] == [True] * 4
        assert seen[0][:2] == (6, 4)
        assert redis_client.llen(queue_name) == 6
    # Closing the channel restores its unacked messages (kombu's restore at shutdown).
    assert redis_client.llen(queue_name) == 10
    assert redis_client.hlen(f"{queue_name}.unacked") == 0


def test_order_priorities_and_the_sync_get(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    publish(redis_url, queue_name, 5)
    publish(redis_url, queue_name, 1, priority=9)  # kombu's priority sub-queue
    bodies = drain(redis_url, queue_name, seconds=1.0)
    # First in, first out; kombu's priority step 9 is a sub-list taken after step 0.
    assert [b["i"] for b in bodies] == [0, 1, 2, 3, 4, 0]

    publish(redis_url, queue_name, 2)
    with connect(redis_url, queue_name) as conn:
        channel = conn.channel()
        first = channel.basic_get(queue_name)
        assert first is not None and first.payload == {"i": 0}
        assert redis_client.hexists(f"{queue_name}.unacked", first.delivery_tag)
        first.ack()
        assert not redis_client.hexists(f"{queue_name}.unacked", first.delivery_tag)
        second = channel.basic_get(queue_name)
        second.ack()
        assert channel.basic_get(queue_name) is None


def test_a_foreign_entry_on_the_list_is_dropped_and_the_rest_delivered(
    redis_url: str, redis_client: redis.Redis, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    publish(redis_url, queue_name, 2)
    redis_client.rpush(queue_name, b"not json at all")  # taken before the two messages
    redis_client.rpush(queue_name, b'{"no": "properties"}')
    with caplog.at_level("ERROR", logger="textlstm.worker.transport"):
        bodies = drain(redis_url, queue_name, seconds=1.0)
    assert sorted(b["i"] for b in bodies) == [0, 1]
    assert sum("not a kombu message" in r.getMessage() for r in caplog.records) == 2
    assert redis_client.llen(queue_name) == 0 and redis_client.hlen(f"{queue_name}.unacked") == 0


def test_idle_consumer_polls_gently(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    """Idle, the consumer alternates one script call and one BLMOVE wait of 25 ms: about 40
    calls a second, not a busy loop; a message pushed meanwhile arrives within the wait."""

    def calls() -> int:
        stats = redis_client.info("commandstats")
        return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("eval", "blmove"))

    got: list[float] = []
    with connect(redis_url, queue_name) as conn:
        channel = conn.channel()
        channel.basic_qos(0, 8, False)

        def on_message(body: Any, message: Any) -> None:
            got.append(time.monotonic())
            message.ack()

        with Consumer(channel, [Queue(queue_name)], callbacks=[on_message], accept=["json"]):
            before, start = calls(), time.monotonic()
            while time.monotonic() - start < 1.0:
                try:
                    conn.drain_events(timeout=0.2)
                except TimeoutError:
                    pass
            per_second = (calls() - before) / (time.monotonic() - start)
            sent = time.monotonic()
            publish(redis_url, queue_name, 1)
            while not got and time.monotonic() - sent < 2:
                try:
                    conn.drain_events(timeout=0.2)
                except TimeoutError:
                    pass
    # Other tests may share this Redis: the bound is loose, a busy loop would be thousands.
    assert 10 < per_second < 400
    assert got and got[0] - sent < 0.5


def test_sigkill_at_random_moments_loses_no_message(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    """Twenty SIGKILLs of a consumer in full flow. After each, what the dead consumer held is
    restored (the visibility-timeout sweep, done at once); in the end every message was seen
    (duplicates are allowed: at-least-once, and the worker's writes are idempotent)."""
    n = 4000
    publish(redis_url, queue_name, n)
    out = tmp_path / "seen.txt"
    rng = random.Random(7)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "tests.worker.killable_consumer", redis_url, queue_name, str(out)]
    kills = 0
    for _ in range(20):
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
        time.sleep(0.6 + rng.random() * 0.4)  # start-up, then a random moment in the flow
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        restore_all(redis_url, queue_name)
        if redis_client.llen(queue_name) == 0:
            break
    assert kills >= 3, "the consumer drained everything too fast to be killed mid-flow"
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while redis_client.llen(queue_name) or redis_client.hlen(f"{queue_name}.unacked"):
            assert time.monotonic() < deadline, "the last consumer did not finish"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    seen = {int(line) for line in out.read_text().split()}
    assert seen == set(range(n)), f"lost {n - len(seen)} message(s) over {kills} kills"


def test_one_call_takes_at_most_max_pop_bytes_but_always_one_message(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    """Big messages are taken a few at a time (a job's messages of 256 texts spread over the
    workers); small ones up to the count limit; one bigger than the budget still comes."""
    from worker.transport import POP_AND_RECORD, Channel

    def one_call(limit: int = 64) -> int:
        keys = [queue_name, f"{queue_name}.unacked", f"{queue_name}.unacked_index"]
        reply = redis_client.eval(
            POP_AND_RECORD, len(keys), *keys, time.time(), limit, Channel.max_pop_bytes
        )
        return len(reply) // 2

    with Connection(redis_url) as conn:
        producer = Producer(conn.channel())
        for i in range(10):  # ~27 KB each once base64-encoded: the third crosses 64 KiB
            producer.publish({"i": i, "pad": "x" * 20_000}, routing_key=queue_name,
                             declare=[Queue(queue_name)], serializer="json")  # fmt: skip
    assert [one_call(), one_call(), one_call(), one_call()] == [3, 3, 3, 1]
    publish(redis_url, queue_name, 100)  # ~300 bytes each: the count limit binds
    assert [one_call(), one_call()] == [64, 36]
    with Connection(redis_url) as conn:
        Producer(conn.channel()).publish(
            {"pad": "x" * 200_000}, routing_key=queue_name, declare=[Queue(queue_name)]
        )
    assert one_call() == 1
    assert redis_client.hlen(f"{queue_name}.unacked") == 10 + 100 + 1  # every one recorded
