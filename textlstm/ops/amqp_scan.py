"""Read the messages waiting in textlstm's queues on RabbitMQ (amqp://) without consuming them,
for `textlstm-admin jobs requeue` / `jobs reap`.

AMQP has no way to look at a queue's messages in place (Redis has `LRANGE`). This takes every
ready message of each queue with `basic.get` *without* acking it, on one channel, reads it, and
closes the channel: RabbitMQ puts every message it handed to that channel back on its queue
(requeued, with the `redelivered` flag set). While the scan holds them no worker gets them;
nothing is lost if the scan dies, since the broker requeues a closed channel's messages itself.
It costs one round trip per message and holds the whole backlog in this process's memory: an
operator's tool for a stuck job, not a hot path.

Messages already delivered to a worker and not acked are not visible to any client; RabbitMQ
redelivers them itself when that worker's connection closes (there is no `unacked` hash to
read or restore, as there is on Redis).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from textlstm.broker_options import per_amqp_queue


@dataclass(frozen=True)
class Waiting:
    """One ready message: the queue it waits in, its content type and raw body."""

    queue: str
    content_type: str
    body: bytes


def waiting_messages(
    broker_url: str,
    names: Iterable[str],
    transport_options: dict[str, Any] | None = None,
    *,
    timeout: float = 5.0,
) -> list[Waiting]:
    """Every ready message of the queues `names` (a queue not declared yet holds none), each
    put back on its queue when its channel closes."""

    def take_all(channel: Any, name: str) -> list[Waiting]:
        taken = []
        while (message := channel.basic_get(queue=name, no_ack=False)) is not None:
            props = getattr(message, "properties", {}) or {}
            body = message.body
            taken.append(
                Waiting(
                    name,
                    str(props.get("content_type") or ""),
                    body if isinstance(body, bytes) else str(body).encode(),
                )
            )
        return taken

    # Closing each queue's channel (per_amqp_queue does) puts every message taken back.
    by_queue = per_amqp_queue(
        broker_url,
        names,
        take_all,
        missing=[],
        transport_options=transport_options,
        timeout=timeout,
    )
    return [w for waiting in by_queue.values() for w in waiting]
