"""Queue names per priority, and how many messages wait in them (Redis).

Priorities are separate queues rather than kombu's per-message priority steps: a worker's
BRPOP lists them in order with kombu's `priority` queue-order strategy (worker/app.py), so
urgent messages are taken first, each queue's depth is one `LLEN`, and a worker can be
dedicated to one priority with `-Q`. `normal` keeps the configured queue name, so producers
and workers that know nothing of priorities keep working.

Pure: where each queue's messages lie in Redis is `textlstm.wire.redis_layout`.
"""

from __future__ import annotations

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
