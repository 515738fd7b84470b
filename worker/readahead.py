"""Read ahead on AMQP: see every message RabbitMQ already sent before choosing the next batch.

On amqp:// the worker has one consumer per priority queue, each with its own prefetch window,
all on one connection. Messages arrive on the socket in the order RabbitMQ sent them: with a
backlog in every queue, the three windows fill at once, and when the worker acks a batch of
high-priority messages, RabbitMQ's next high ones (the refill) queue up on the socket *behind*
the normal and bulk messages already sent. A worker that ran a batch as soon as it had a full
one (as on Redis, where the pop itself takes high first) would run those normal and bulk
messages before it had read the refill: measured, with 400 messages a priority and a prefetch
of 256, 2,048 normal and bulk rows were committed before the last high one
(tests/e2e/test_amqp_priorities.py).

So on AMQP the strategy (`worker.strategy`) asks `more_to_read` before it cuts a batch, and
between batches: while the connection's socket already holds data, it reads that first (the
batcher then cuts high items first among everything held), for at most `MAX_DEFER_S` at a
time so a broker that never stops sending cannot starve the batches. The check is one
`select` with a zero timeout. It sees the kernel's socket buffer only: bytes already inside a
TLS layer (amqps://) are not seen, and the batch runs then, as before.
"""

from __future__ import annotations

import select
from typing import Any

#: Longest a batch waits for the socket to be read: bounded, since a broker that kept
#: sending would otherwise never let a batch run (the prefetch windows bound it anyway).
MAX_DEFER_S = 0.25


def socket_of(channel: Any) -> Any:
    """The socket under a py-amqp channel (`amqp.Connection.sock`), or None."""
    connection = getattr(channel, "connection", None)
    sock = getattr(connection, "sock", None)
    return sock if sock is not None and hasattr(sock, "fileno") else None


def more_to_read(channel: Any) -> bool:
    """Whether the channel's connection has data waiting to be read now (never blocks)."""
    sock = socket_of(channel)
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):  # closed meanwhile: nothing to read ahead
        return False
    return bool(readable)
