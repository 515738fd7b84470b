"""Read the messages waiting in textlstm's queues on RabbitMQ (amqp://) without consuming them,
for `textlstm-admin jobs requeue` / `jobs reap`.

AMQP has no way to look at a queue's messages in place (Redis has `LRANGE`). This takes every
ready message of each queue with `basic.get` *without* acking it, on one channel, and reads it.
While the scan holds them no worker gets them; nothing is lost if the scan dies, since the
broker requeues a closed channel's messages itself. It costs a few round trips per message and
holds the whole backlog in this process's memory: an operator's tool for a stuck job, not a hot
path.

Putting them back is not left to closing the channel, as it was: a quorum queue counts every
return in `x-delivery-count` (RabbitMQ 3.x counts a requeue like a dead consumer), and the
queues' `x-delivery-limit` and the worker's quarantine act on it, so a few scans would have
quarantined the whole backlog. Instead each message is published again, as it was, to the end of
its queue (with publisher confirms), carrying the returns it had in `RETURNS_HEADER`, and only
then acked (`put_back`): the scan itself counts for nothing, and the deaths a message had
before still count (`worker.strategy.amqp_deliveries` adds the two). The backlog keeps its
order; messages published meanwhile may end up before it. Should the scan die between a
publish and its ack, that message is there twice, and stored once.

Messages already delivered to a worker and not acked are not visible to any client; RabbitMQ
redelivers them itself when that worker's connection closes (there is no `unacked` hash to
read or restore, as there is on Redis).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from textlstm.broker_options import per_amqp_queue

#: The returns (`x-delivery-count`) a message had when a scan took it and published it again:
#: the new copy starts at 0 in RabbitMQ's count, and the worker adds this to it.
RETURNS_HEADER = "textlstm-returns"


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
        taken, held = [], []
        while (message := channel.basic_get(queue=name, no_ack=False)) is not None:
            props = getattr(message, "properties", {}) or {}
            body = message.body
            held.append(message)
            taken.append(
                Waiting(
                    name,
                    str(props.get("content_type") or ""),
                    body if isinstance(body, bytes) else str(body).encode(),
                )
            )
        put_back(channel, name, held)
        return taken

    # Anything not put back yet when a channel closes (per_amqp_queue closes each) goes back
    # by RabbitMQ's requeue, counted.
    by_queue = per_amqp_queue(
        broker_url,
        names,
        take_all,
        missing=[],
        transport_options=transport_options,
        timeout=timeout,
    )
    return [w for waiting in by_queue.values() for w in waiting]


def put_back(channel: Any, queue: str, messages: list[Any]) -> None:
    """Publish each message taken from `queue` again, as it was, to the end of the queue (the
    default exchange routes by queue name), with its returns so far in `RETURNS_HEADER`; then
    ack the originals. Publisher confirms on this channel: an original is acked only once
    RabbitMQ holds its copy."""
    import amqp

    if not messages:
        return
    channel.confirm_select()
    for message in messages:
        props = dict(getattr(message, "properties", {}) or {})
        headers = dict(props.pop("application_headers", None) or {})
        returns = _count(headers.pop("x-delivery-count", 0)) + _count(headers.get(RETURNS_HEADER))
        headers[RETURNS_HEADER] = returns
        copy = amqp.Message(message.body, application_headers=headers, **props)
        channel.basic_publish_confirm(copy, exchange="", routing_key=queue)
        channel.basic_ack(message.delivery_tag)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
