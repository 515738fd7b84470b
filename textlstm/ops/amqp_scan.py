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
    from amqp.exceptions import NotFound
    from kombu import Connection

    out: list[Waiting] = []
    with Connection(
        broker_url, connect_timeout=timeout, transport_options=dict(transport_options or {})
    ) as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
        for name in names:
            # One channel per queue: a missing queue closes its channel, and closing it is
            # what puts the messages taken from it back.
            channel = conn.channel()
            try:
                while True:
                    message = channel.basic_get(queue=name, no_ack=False)
                    if message is None:
                        break
                    props = getattr(message, "properties", {}) or {}
                    body = message.body
                    out.append(
                        Waiting(
                            name,
                            str(props.get("content_type") or ""),
                            body if isinstance(body, bytes) else str(body).encode(),
                        )
                    )
            except NotFound:
                pass
            finally:
                try:
                    channel.close()  # every message taken goes back to its queue
                except Exception:  # noqa: BLE001 - already closed by the broker
                    pass
    return out
