"""worker.transport against the real Redis: the pop records a message as delivered in the same
atomic step, so a consumer SIGKILLed at any moment loses nothing."""

from __future__ import annotations

import base64
import json
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

from tests.fixtures.transport import connect, kill_mid_flow, unacked_keys
from textlstm.wire.deadletters import DeadLetter
from textlstm.wire.messages import TASK_NAME

ROOT = Path(__file__).resolve().parents[2]


def task(body: Any) -> list[Any]:
    """A Celery protocol 2 body of the classify task (the only thing the transport accepts)."""
    return [[body], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]


def publish(url: str, queue: str, n: int, *, priority: int | None = None, **extra: Any) -> None:
    with Connection(url) as conn:
        producer = Producer(conn.channel())
        for i in range(n):
            producer.publish(
                task({"i": i, **extra}),
                routing_key=queue,
                declare=[Queue(queue, max_priority=9 if priority is not None else None)],
                serializer="json",
                priority=priority,
                headers={"task": TASK_NAME, "id": f"task-{i}"},
            )


def drain(url: str, queue: str, *, prefetch: int = 64, seconds: float = 1.5) -> list[Any]:
    """Consume for `seconds` with our transport, acking everything; return the bodies."""
    got: list[Any] = []
    with connect(url, queue) as conn:
        channel = conn.channel()
        channel.basic_qos(0, prefetch, False)

        def on_message(body: Any, message: Any) -> None:
            got.append(body[0][0])
            message.ack()

        with Consumer(channel, [Queue(queue)], callbacks=[on_message], accept=["json"]):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                try:
                    conn.drain_events(timeout=0.2)
                except TimeoutError:
                    pass
    return got


#: The keys after the queues in the pop script's KEYS, as unacked_keys names them.
POP_KEYS = ("unacked_key", "unacked_index_key", "deliveries_key", "dead_letter_key")


def dead_letters(queue: str) -> str:
    return unacked_keys(queue)["dead_letter_key"]


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
        assert first is not None and first.payload[0][0] == {"i": 0}
        assert redis_client.hexists(f"{queue_name}.unacked", first.delivery_tag)
        first.ack()
        assert not redis_client.hexists(f"{queue_name}.unacked", first.delivery_tag)
        second = channel.basic_get(queue_name)
        second.ack()
        assert channel.basic_get(queue_name) is None


def test_a_foreign_entry_on_the_list_is_dead_lettered_and_the_rest_delivered(
    redis_url: str, redis_client: redis.Redis, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    publish(redis_url, queue_name, 2)
    redis_client.rpush(queue_name, b"not json at all")  # taken before the two messages
    redis_client.rpush(queue_name, b'{"no": "properties"}')
    with caplog.at_level("ERROR", logger="textlstm.worker.transport"):
        bodies = drain(redis_url, queue_name, seconds=1.0)
    assert sorted(b["i"] for b in bodies) == [0, 1]
    assert sum("dead-lettered a message" in r.getMessage() for r in caplog.records) == 2
    assert redis_client.llen(queue_name) == 0 and redis_client.hlen(f"{queue_name}.unacked") == 0
    records = [
        DeadLetter.from_json(r) for r in redis_client.lrange(dead_letters(queue_name), 0, -1)
    ]
    # Newest first: the second entry taken is on top.
    assert [(r.stage, r.entry) for r in records] == [
        ("envelope", "not json at all"), ("envelope", '{"no": "properties"}')
    ]  # fmt: skip
    assert records[0].reason.startswith("entry is not JSON")
    assert records[1].reason == "properties must be an object, got null"


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
        kill_mid_flow(proc, out, rng, lo=n // 40, hi=n // 10)
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
        keys = [queue_name, *(unacked_keys(queue_name)[k] for k in POP_KEYS)]
        reply = redis_client.eval(
            POP_AND_RECORD, len(keys), *keys, time.time(), limit, Channel.max_pop_bytes, 3, 100
        )
        return len(reply) // 4

    with Connection(redis_url) as conn:
        producer = Producer(conn.channel())
        for i in range(10):  # ~27 KB each once base64-encoded: the third crosses 64 KiB
            producer.publish(task({"i": i, "pad": "x" * 20_000}), routing_key=queue_name,
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


def pop(client: redis.Redis, queue: str, limit: int = 64, max_deliveries: int = 3) -> list[Any]:
    """One call of the pop script: [(payload, deliveries, tag), ...]."""
    from worker.transport import POP_AND_RECORD, Channel

    keys = [queue, *(unacked_keys(queue)[k] for k in POP_KEYS)]
    reply = client.eval(
        POP_AND_RECORD, len(keys), *keys, time.time(), limit, Channel.max_pop_bytes,
        max_deliveries, 100,
    )  # fmt: skip
    return [(json.loads(reply[i + 1]), int(reply[i + 2]), reply[i + 3].decode())
            for i in range(0, len(reply), 4)]  # fmt: skip


def test_a_message_a_worker_died_holding_is_taken_alone_then_quarantined(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    """Deliveries are counted per message. One taken again after its worker died comes
    alone (so a poison message is not in flight with innocent neighbours when it kills
    again), and one taken max_deliveries times without an ack goes to the dead-letter list,
    atomically, instead of to a consumer."""
    counts = unacked_keys(queue_name)["deliveries_key"]
    publish(redis_url, queue_name, 3)
    first = pop(redis_client, queue_name)
    assert [d for _, d, _ in first] == [1, 1, 1]
    assert {k.decode(): int(v) for k, v in redis_client.hgetall(counts).items()} == {
        t: 1 for _, _, t in first
    }
    assert restore_all(redis_url, queue_name) == 3  # the worker died: all three come back
    publish(redis_url, queue_name, 2, fresh=True)  # new messages behind them
    for _ in range(3):  # each survivor comes alone, once taken twice
        (taken,) = pop(redis_client, queue_name)
        assert taken[1] == 2
    fresh = pop(redis_client, queue_name)
    assert [(m[1], json.loads(base64.b64decode(m[0]["body"]))[0][0].get("fresh")) for m in fresh] \
        == [(1, True), (1, True)]  # fmt: skip
    # Acks forget the count; the poison one (never acked) keeps coming back until quarantined.
    survivors = [t for _, _, t in first]
    with connect(redis_url, queue_name) as conn:
        qos = conn.channel().qos
        for tag in survivors[1:] + [t for _, _, t in fresh]:
            qos.ack(tag)
    assert list(redis_client.hkeys(counts)) == [survivors[0].encode()]
    assert restore_all(redis_url, queue_name) == 1
    (taken,) = pop(redis_client, queue_name)
    assert taken[1] == 3
    assert restore_all(redis_url, queue_name) == 1
    assert pop(redis_client, queue_name)[0][1:] == (-3, survivors[0])  # quarantined
    assert pop(redis_client, queue_name) == []
    assert redis_client.llen(queue_name) == 0
    assert redis_client.hlen(f"{queue_name}.unacked") == 0 and redis_client.hlen(counts) == 0
    (raw,) = redis_client.lrange(dead_letters(queue_name), 0, -1)
    record = DeadLetter.from_json(raw)
    assert (record.id, record.stage, record.deliveries, record.list) == (
        survivors[0],
        "poison",
        3,
        queue_name,
    )
    assert "taken 3 times and never acknowledged" in record.reason
    assert json.loads(record.entry)["properties"]["delivery_tag"] == survivors[0]
    assert record.task_id and record.at > 0


def test_a_suspect_behind_fresh_messages_waits_for_its_own_call(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    publish(redis_url, queue_name, 1)
    (suspect,) = pop(redis_client, queue_name)
    restore_all(redis_url, queue_name)  # at the consuming end
    suspect_raw = redis_client.rpop(queue_name)
    publish(redis_url, queue_name, 2)
    redis_client.lpush(queue_name, suspect_raw)  # now behind the two fresh ones
    got = pop(redis_client, queue_name)
    assert [d for _, d, _ in got] == [1, 1]  # the suspect was put back, not taken with them
    assert [t for _, d, t in pop(redis_client, queue_name)] == [suspect[2]]


def test_a_delivery_tag_already_in_flight_is_refused_not_recorded_over(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    publish(redis_url, queue_name, 1)
    raw = redis_client.lindex(queue_name, 0)
    redis_client.rpush(queue_name, raw)  # a hostile producer reuses the tag
    # The copy counts as taken before (its tag is): it waits for a call of its own, where it
    # is refused, not recorded over the first.
    assert [d for _, d, _ in pop(redis_client, queue_name)] == [1]
    assert [d for _, d, _ in pop(redis_client, queue_name)] == [0]
    assert redis_client.hlen(f"{queue_name}.unacked") == 1
    counts = unacked_keys(queue_name)["deliveries_key"]
    assert [int(v) for v in redis_client.hvals(counts)] == [1]  # the first's count, unchanged


def test_an_entry_whose_tag_no_client_can_ack_is_dead_lettered_not_left_unacked(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    """A lone surrogate in the delivery tag: Lua records it, Python could never ack it (UTF-8
    cannot encode it). It is dead-lettered and its unacked record removed by the bytes the
    script recorded."""
    publish(redis_url, queue_name, 1)
    raw = json.loads(redis_client.rpop(queue_name))
    raw["properties"]["delivery_tag"] = "tag-\ud800"
    redis_client.lpush(queue_name, json.dumps(raw))
    publish(redis_url, queue_name, 1, after=True)
    bodies = drain(redis_url, queue_name, seconds=1.0)
    assert bodies == [{"i": 0, "after": True}]
    records = redis_client.lrange(dead_letters(queue_name), 0, -1)
    assert len(records) == 1 and "not valid Unicode" in DeadLetter.from_json(records[0]).reason
    assert redis_client.hlen(f"{queue_name}.unacked") == 0
    assert redis_client.hlen(unacked_keys(queue_name)["deliveries_key"]) == 0
