"""The dead-letter queue on RabbitMQ (amqp://): publishing records to it (the worker) and
reading, requeueing and purging them (`textlstm-admin dead-letters`, `status`).

On Redis the dead letters are a list (`textlstm.ops.deadletters`); on RabbitMQ they are the
messages of the quorum queue `<queue>.dead-letters`, which the three priority queues
dead-letter into (`textlstm.broker_options.amqp_queue_arguments`). The record format and the
reading of RabbitMQ's own dead letters are `textlstm.wire.deadletters` (pure); this module is
the I/O around it.

AMQP cannot look at a queue in place: reading takes every message with `basic.get` without
acking it, on one channel, and closes the channel, which puts them all back. RabbitMQ counts
that return in `x-delivery-count`, which matters nowhere here: the dead-letter queue has no
delivery limit and no worker reads it (the work queues' scan, `textlstm.ops.amqp_scan`,
publishes its messages again instead). Requeue and purge ack exactly the messages
they took care of and put the rest back the same way, so two operators at once never lose a
record (one of them finds it gone). It holds the whole dead-letter queue in memory while it
reads: an operator's tool, not a hot path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from textlstm.broker_options import (
    AMQP_TRANSPORT_OPTIONS,
    amqp_dead_letter_queue,
    amqp_dead_letter_queues,
    close_quietly,
)
from textlstm.wire.deadletters import RECORD_HEADER, DeadLetter, from_amqp

log = logging.getLogger("textlstm.deadletters")

#: How a publish of dead-letter records is retried while the connection is re-established.
RETRY_POLICY = {"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 2}


class DeadLetterPublisher:
    """Publishes dead-letter records to `base`'s dead-letter queue on a connection of its own
    (not the consumer's channel, whose deliveries a publisher-confirm wait would otherwise
    dispatch in the middle of a batch), with publisher confirms: `publish` returns True only
    once RabbitMQ has the records, so the caller may then ack what they replace."""

    def __init__(self, broker_url: str, base: str, transport_options: Mapping[str, Any]) -> None:
        self.broker_url = broker_url
        self.queue = amqp_dead_letter_queues(base)
        self.options = {**AMQP_TRANSPORT_OPTIONS, **transport_options}
        self._conn: Any = None
        self._producer: Any = None

    def publish(self, records: Iterable[DeadLetter]) -> bool:
        """Send each record; False (logged) when RabbitMQ could not be reached or refused one:
        the caller then leaves the message it replaces to RabbitMQ (unacked or rejected)."""
        from kombu import Connection, Producer

        records = list(records)
        if not records:
            return True
        try:
            if self._producer is None:
                self._conn = Connection(
                    self.broker_url, connect_timeout=5, transport_options=self.options
                )
                self._producer = Producer(self._conn)
            publish = self._conn.ensure(self._producer, self._producer.publish, **RETRY_POLICY)
            for record in records:
                publish(
                    record.to_json(),
                    exchange=self.queue.exchange,
                    routing_key=self.queue.routing_key,
                    declare=[self.queue],
                    headers={RECORD_HEADER: 1},
                    message_id=record.id,
                    content_type="application/json",
                    content_encoding="utf-8",
                    delivery_mode=2,
                )
        except Exception as exc:  # noqa: BLE001 - the caller falls back on RabbitMQ's own
            log.warning("could not publish %d dead letter(s): %s", len(records), exc)
            self.close()
            return False
        return True

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.release()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
        self._conn = self._producer = None


def _connect(broker_url: str, options: Mapping[str, Any], timeout: float) -> Any:
    from kombu import Connection

    conn = Connection(broker_url, connect_timeout=timeout, transport_options=dict(options))
    conn.ensure_connection(max_retries=1, timeout=timeout)
    return conn


def _take_all(channel: Any, queue: str) -> list[tuple[Any, DeadLetter]]:
    """Every message of the dead-letter queue, unacked, each with its record (oldest first).
    A message whose record does not parse is shown with stage `unreadable`."""
    from amqp.exceptions import NotFound

    out = []
    try:
        while (message := channel.basic_get(queue=queue, no_ack=False)) is not None:
            body = message.body
            try:
                record = from_amqp(body, message.headers)
            except (ValueError, TypeError, KeyError) as exc:
                record = DeadLetter(id="?", at=0, stage="unreadable", reason=str(exc))
            out.append((message, record))
    except NotFound:  # no worker declared it yet: no dead letters
        return []
    return out


def read(
    broker_url: str,
    base: str,
    options: Mapping[str, Any],
    *,
    timeout: float = 5.0,
) -> list[DeadLetter]:
    """Every record of `base`'s dead-letter queue, newest first; all of them are put back."""
    with _connect(broker_url, options, timeout) as conn:
        channel = conn.channel()
        try:
            return [r for _, r in reversed(_take_all(channel, amqp_dead_letter_queue(base)))]
        finally:
            close_quietly(channel)


def settle(
    broker_url: str,
    base: str,
    options: Mapping[str, Any],
    chosen: Callable[[DeadLetter], bool],
    action: Callable[[DeadLetter], bool],
    *,
    timeout: float = 5.0,
) -> list[DeadLetter]:
    """For each record `chosen` picks, run `action` (requeue it, or nothing to purge it) and,
    when it returns True, ack its message: it leaves the dead-letter queue. Every other
    message is put back. Returns the records acked. An exception from `action` stops there
    with that record and the rest put back."""
    done: list[DeadLetter] = []
    with _connect(broker_url, options, timeout) as conn:
        channel = conn.channel()
        try:
            for message, record in _take_all(channel, amqp_dead_letter_queue(base)):
                if chosen(record) and action(record):
                    channel.basic_ack(message.delivery_tag)
                    done.append(record)
        finally:
            close_quietly(channel)
    return done


def purge_all(
    broker_url: str, base: str, options: Mapping[str, Any], *, timeout: float = 5.0
) -> int:
    """Delete every record (`queue.purge`); how many there were."""
    from amqp.exceptions import NotFound

    with _connect(broker_url, options, timeout) as conn:
        channel = conn.channel()
        try:
            return int(channel.queue_purge(queue=amqp_dead_letter_queue(base)) or 0)
        except NotFound:
            return 0
        finally:
            close_quietly(channel)
