"""Queue names per priority, and how many messages wait in them (Redis).

Priorities are separate queues rather than kombu's per-message priority steps: a worker's
BRPOP lists them in order with kombu's `priority` queue-order strategy (worker/app.py), so
urgent messages are taken first, each queue's depth is one `LLEN`, and a worker can be
dedicated to one priority with `-Q`. `normal` keeps the configured queue name, so producers
and workers that know nothing of priorities keep working.

Only the depth functions do I/O; they need just the broker URL (no Celery, no torch).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

Priority = Literal["high", "normal", "bulk"]
#: Consumption order: a worker takes `high` while any waits, then `normal`, then `bulk`.
PRIORITIES: tuple[Priority, ...] = ("high", "normal", "bulk")


def queue_for(base: str, priority: str) -> str:
    """The queue a message of `priority` goes to (`base`, `base.high` or `base.bulk`)."""
    if priority not in PRIORITIES:
        from textlstm.errors import ValidationError

        raise ValidationError(f"priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")
    return base if priority == "normal" else f"{base}.{priority}"


def consume_order(base: str) -> list[str]:
    """Every priority queue of `base`, highest first: a worker's default `--queues`."""
    return [queue_for(base, p) for p in PRIORITIES]


def redis_client(broker_url: str):  # type: ignore[no-untyped-def]
    """A short-timeout redis-py client for the broker (a status probe must not hang)."""
    import redis

    return redis.Redis.from_url(broker_url, socket_timeout=5, socket_connect_timeout=5)


def queue_depths(client: object, names: Iterable[str]) -> dict[str, int]:
    """Messages waiting (not yet delivered to a worker) in each queue, in one round trip.

    kombu keeps a Redis queue as a list named after it; messages published with a kombu
    priority go to `<name>\\x06\\x16<step>` lists, which are counted in too.
    """
    names = list(names)
    steps = ("", "\x06\x163", "\x06\x166", "\x06\x169")
    pipe = client.pipeline(transaction=False)  # type: ignore[attr-defined]
    for name in names:
        for step in steps:
            pipe.llen(name + step)
    counts = pipe.execute()
    return {
        name: sum(counts[i * len(steps) : (i + 1) * len(steps)]) for i, name in enumerate(names)
    }


def unacked_count(client: object) -> int:
    """Messages delivered to some worker and not yet acked (kombu's Redis `unacked` hash,
    shared by every queue of the database): buffered or in a batch being committed."""
    return int(client.hlen("unacked"))  # type: ignore[attr-defined]
