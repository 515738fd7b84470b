"""How many messages wait in textlstm's queues on RabbitMQ (amqp://), for `textlstm-admin status`.

A passive `queue.declare` returns the queue's `message_count`: messages *ready* (not yet delivered
to a consumer). Messages delivered to a worker and not yet acked are not in it, and AMQP offers no
count of them to a client (the management HTTP API or `rabbitmqctl list_queues
messages_unacknowledged` has it), so `status` shows no unacked figure on amqp://. A queue not
declared yet (no producer or worker has used it) counts 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def amqp_queue_depths(
    broker_url: str,
    names: Iterable[str],
    transport_options: dict[str, Any] | None = None,
    *,
    timeout: float = 5.0,
) -> dict[str, int]:
    """Ready messages per queue, by passive declaration, one short-lived connection."""
    from amqp.exceptions import NotFound
    from kombu import Connection

    out: dict[str, int] = {}
    with Connection(
        broker_url, connect_timeout=timeout, transport_options=dict(transport_options or {})
    ) as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
        for name in names:
            # A passive declare of a missing queue closes its channel: one channel per queue.
            channel = conn.channel()
            try:
                ok = channel.queue_declare(queue=name, passive=True)
                out[name] = int(ok.message_count)
            except NotFound:
                out[name] = 0
            finally:
                try:
                    channel.close()
                except Exception:  # noqa: BLE001 - already closed by the broker
                    pass
    return out
