"""Recovery: find the items of a job that have no row yet, and enqueue them again.

Why this exists: acks-after-commit keeps every *delivered* message safe, but a message can still
leave the broker without reaching SQL. Celery's Redis transport pops a message with BRPOP and
only then records it in its `unacked` hash (celery/celery#7950): a worker SIGKILLed in between,
or while a popped reply still sits in its socket, loses that message. A Redis restarted without
append-only persistence loses every queued one. Such a job stays `running` (or `queued`) for
ever. `reap` finds those jobs (store.jobs.stuck_jobs); `requeue` re-enqueues their missing items
(store.results.missing_indexes).

Where the texts come from (SQL holds no texts): a copy of the job's messages still in the broker
(waiting in a queue list: left alone, a worker will get them; or delivered-but-unacked: sent
again now rather than after the visibility timeout), else the producer's own input file
(`--input`, numbered like `submit` numbers it). Items found nowhere are reported as lost.

Idempotent: predictions are keyed by (job, item index), so an item enqueued twice is stored once;
a second `requeue` finds the first one's messages waiting in the queue and sends nothing.
Broker payloads are decoded as JSON only: anything else is skipped, never unpickled.

On RabbitMQ (amqp://) the same command means what AMQP allows (`RequeueReport.amqp`): the
messages *waiting* in the job's queues are read with `basic.get` and put back unacked
(`textlstm.ops.amqp_scan`); items found there are left alone. There is no `unacked` hash: a
message delivered to a worker and not acked is invisible to any client, and RabbitMQ itself
redelivers it when that worker's connection closes, so no item is re-sent "from an unacked
copy". Items in no queue are re-sent from `--input` (published with confirms), else reported
as not in any queue.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from textlstm.broker_options import is_amqp
from textlstm.errors import ValidationError
from textlstm.settings import Settings
from textlstm.store.jobs import get_job
from textlstm.store.results import missing_indexes
from textlstm.wire.messages import (
    ClassifyMessage,
    Item,
    Limits,
    parse_body,
    parse_message,
    split_items,
)
from textlstm.wire.queues import consume_order
from textlstm.wire.redis_layout import (
    UNACKED_KEY,
    broker_client,
    loads,
    priority_lists,
    task_argument,
)


@dataclass(frozen=True)
class BrokerCopy:
    """A message of the job found in the broker: `where` is `queued` or `unacked`."""

    where: str
    queue: str
    message: ClassifyMessage


@dataclass
class RequeueReport:
    job_id: uuid.UUID
    status: str
    expected: int
    missing: int
    waiting: int = 0  # missing items already waiting in a queue: nothing to do
    from_broker: int = 0  # re-sent from an unacked copy
    from_input: int = 0  # re-sent from the producer's input file
    lost: list[int] = field(default_factory=list)  # no copy anywhere
    messages_sent: int = 0
    #: On RabbitMQ: no unacked copies to read (the broker redelivers them itself), so `lost`
    #: means "in no queue" (possibly held by a live worker, or lost).
    amqp: bool = False

    @property
    def sent(self) -> int:
        return self.from_broker + self.from_input


def decode_payload(payload: Any, limits: Limits) -> ClassifyMessage | None:
    """A kombu message dict (as stored in a Redis list or the unacked hash) -> our message, or
    None when it is not a valid JSON classify task. Never deserialises anything but JSON."""
    if not isinstance(payload, dict) or payload.get("content-type") != "application/json":
        return None
    try:
        return parse_message(task_argument(payload), limits=limits)
    except ValidationError:
        return None


def broker_copies(
    client: Any, job_id: uuid.UUID, *, queues: Sequence[str], limits: Limits
) -> Iterator[BrokerCopy]:
    """Every message of `job_id` waiting in `queues` or delivered and unacked (scans them all:
    an operator's tool, not a hot path)."""
    for queue in queues:
        for key in priority_lists(queue):
            for raw in client.lrange(key, 0, -1):
                msg = decode_payload(loads(raw), limits)
                if msg is not None and msg.job_id == job_id:
                    yield BrokerCopy("queued", queue, msg)
    for _tag, raw in client.hscan_iter(UNACKED_KEY):
        entry = loads(raw)
        if not isinstance(entry, list) or len(entry) != 3:
            continue
        msg = decode_payload(entry[0], limits)
        if msg is not None and msg.job_id == job_id:
            yield BrokerCopy("unacked", str(entry[2]), msg)


def decode_amqp(content_type: str, body: bytes, limits: Limits) -> list[ClassifyMessage]:
    """The textlstm messages of one AMQP message body (a Celery protocol-2 JSON body whose one
    argument is a version 1 message or a version 2 envelope); [] for anything else. JSON only."""
    if content_type != "application/json":
        return []
    try:
        return list(parse_body(json.loads(body)[0][0], limits=limits).messages)
    except Exception:  # noqa: BLE001 - not ours, or unreadable: skipped
        return []


def amqp_copies(settings: Settings, job_id: uuid.UUID, *, limits: Limits) -> list[BrokerCopy]:
    """The messages of `job_id` waiting in its queues on RabbitMQ (`textlstm.ops.amqp_scan`),
    each put back on its queue. BrokerError (one line, naming TEXTLSTM_BROKER_URL) when the
    broker refuses the login or the vhost, or does not answer."""
    from textlstm.broker_options import probe_broker
    from textlstm.client.publisher import broker_error, checked_queues
    from textlstm.ops.amqp_scan import waiting_messages

    doing = f"read the broker's copies of job {job_id}"
    try:
        probe_broker(
            settings.broker_url, settings.broker_transport_options, queues=checked_queues(settings)
        )
        found = waiting_messages(
            settings.broker_url, consume_order(settings.queue), settings.broker_transport_options
        )
    except Exception as exc:  # noqa: BLE001 - one line, as when the re-send itself fails
        raise broker_error(settings, doing, exc) from None
    return [
        BrokerCopy("queued", w.queue, msg)
        for w in found
        for msg in decode_amqp(w.content_type, w.body, limits)
        if msg.job_id == job_id
    ]


def redis_copies(settings: Settings, job_id: uuid.UUID, *, limits: Limits) -> list[BrokerCopy]:
    """The messages of `job_id` in its Redis queues and the unacked hash (`broker_copies`);
    BrokerError (one line) when Redis cannot be read."""
    from redis.exceptions import RedisError

    from textlstm.client.publisher import broker_error

    try:
        client = broker_client(settings)
        try:
            return list(
                broker_copies(client, job_id, queues=consume_order(settings.queue), limits=limits)
            )
        finally:
            client.close()
    except (RedisError, OSError) as exc:  # one line, as when the re-send itself fails
        raise broker_error(settings, f"read the broker's copies of job {job_id}", exc) from None


def requeue_job(
    job_id: uuid.UUID,
    *,
    settings: Settings,
    input_texts: Sequence[str] | None = None,
    dry_run: bool = False,
) -> RequeueReport:
    """Re-enqueue the items of `job_id` that have no row yet (see the module docstring)."""
    from textlstm.store.db import session_scope

    limits = Limits.from_settings(settings)
    with session_scope(settings.database_url) as session:
        job = get_job(session=session, job_id=job_id)
        missing = missing_indexes(session=session, job=job)
        status, expected, model_ref = job.status, job.expected_count, job.model_ref
        metadata, submitted_at = job.meta, job.submitted_at
    report = RequeueReport(
        job_id, status, expected, len(missing), amqp=is_amqp(settings.broker_url)
    )
    if not missing:
        return report
    if input_texts is not None and len(input_texts) != expected:
        raise ValidationError(
            f"--input has {len(input_texts)} text(s) but job {job_id} has {expected} items: "
            "give the exact file the job was submitted from"
        )
    from textlstm.client.publisher import publish_messages

    if report.amqp:
        copies = amqp_copies(settings, job_id, limits=limits)
    else:
        copies = redis_copies(settings, job_id, limits=limits)
    wanted = set(missing)
    waiting = {i.index for c in copies if c.where == "queued" for i in c.message.items}
    report.waiting = len(wanted & waiting)
    wanted -= waiting
    texts: dict[int, Item] = {}
    priority, deadline = "normal", None
    for c in copies:
        priority, deadline = c.message.priority, c.message.deadline
        for item in c.message.items:
            if item.index in wanted and c.where == "unacked":
                texts.setdefault(item.index, item)
    report.from_broker = len(texts)
    for index in sorted(wanted - texts.keys()):
        if input_texts is not None:
            texts[index] = Item(index, input_texts[index])
            report.from_input += 1
        else:
            report.lost.append(index)
    if not texts or dry_run:
        return report
    items = [texts[i] for i in sorted(texts)]
    messages = [
        ClassifyMessage(
            job_id, model_ref, expected, chunk, metadata, submitted_at, priority, deadline
        )
        for chunk in split_items(items, limits=limits)
    ]
    # No backpressure: recovery re-sends what a queue already held once.
    publish_messages(settings, messages)
    report.messages_sent = len(messages)
    return report


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `2h`, `1d` (or plain seconds) -> timedelta."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value = text.strip().lower()
    scale = units.get(value[-1:], None)
    number = value[:-1] if scale else value
    try:
        seconds = float(number) * (scale or 1)
    except ValueError:
        raise ValidationError(f"duration {text!r} is not like 90s, 15m, 2h or 1d") from None
    if seconds < 0:
        raise ValidationError(f"duration {text!r} is negative")
    return timedelta(seconds=seconds)
