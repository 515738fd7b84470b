"""A batching producer: many small jobs, few broker messages.

Celery costs ~2 ms per message on the worker whatever the message holds (measured here), so an
application that submits one text per job through `Client.submit` caps near 500 texts/s per
worker process however fast the model is. `Producer` buffers submitted jobs and sends them as
version 2 envelopes (`textlstm.wire.messages.envelope`): up to `max_items` items of many jobs in one
message, sent when the buffer is full or its oldest job has waited `linger_ms` — the way Kafka
producers batch with `linger.ms` and `batch.size`.

    from textlstm.client.producer import Producer
    with Producer(linger_ms=5) as producer:          # close() flushes what is buffered
        for review in stream:
            job_id = producer.submit([review.text], model="sentiment@production")

Every job is validated when it is submitted (the same rules as `Client.submit`), so a bad job
raises at once and never reaches the buffer; an unknown model is refused up front when a
database is configured. Job rows are written in bulk, one statement per flush, just before the
envelope is published, through the client's one publisher (`textlstm.client.publisher`, the
same wire format, queues, headers and BrokerError as `Client.submit`). A flush that fails
(broker unreachable) keeps its jobs buffered and raises BrokerError from the next `submit`,
`flush` or `close`, which try again.

Thread-safe: any number of threads may submit; one background thread sends lingering
buffers. Not fork-safe: make one Producer per process.
"""

from __future__ import annotations

import atexit
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from textlstm.client.publisher import Outgoing, publish_envelopes
from textlstm.errors import BrokerError, ValidationError
from textlstm.settings import Settings, get_settings
from textlstm.wire.messages import ClassifyMessage, Limits
from textlstm.wire.queues import queue_for


@dataclass
class _Buffer:
    """Messages waiting for one queue, with their size and the oldest one's arrival."""

    messages: list[ClassifyMessage] = field(default_factory=list)
    items: int = 0
    bytes: int = 0
    since: float = 0.0


def _size(message: ClassifyMessage) -> int:
    """About the message's JSON size; an ASCII text's length is its size, without encoding."""
    return (
        sum((len(t) if (t := i.text).isascii() else len(t.encode())) + 64 for i in message.items)
        + 256
    )


def pack_envelopes(
    messages: Sequence[ClassifyMessage], max_items: int, max_bytes: int
) -> list[list[ClassifyMessage]]:
    """Pack messages, in order, into envelopes of at most `max_items` items and about
    `max_bytes` (a message bigger than either travels alone)."""
    out: list[list[ClassifyMessage]] = []
    items = size = 0
    for msg in messages:
        n, b = len(msg.items), _size(msg)
        if out and items + n <= max_items and size + b <= max_bytes:
            out[-1].append(msg)
            items, size = items + n, size + b
        else:
            out.append([msg])
            items, size = n, b
    return out


class Producer:
    """Coalesces small jobs into version 2 envelopes; see the module docstring."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        linger_ms: float = 5.0,
        max_items: int | None = None,
        record_jobs: bool | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        if linger_ms < 0:
            raise ValidationError(f"linger_ms must be ≥ 0, got {linger_ms}")
        self.limits = Limits.from_settings(self.settings)
        self.linger_s = linger_ms / 1000
        self.max_items = min(
            max_items or self.limits.message_max_items, self.limits.message_max_items
        )
        if self.max_items < 1:
            raise ValidationError(f"max_items must be ≥ 1, got {max_items}")
        self.record_jobs = self.settings.database_configured if record_jobs is None else record_jobs
        self._lock = threading.Condition()
        self._send_lock = threading.Lock()  # one publisher at a time: kombu is not thread-safe
        self._buffers: dict[str, _Buffer] = {}
        self._models: set[str] = set()  # model references already checked against the registry
        self._error: BrokerError | None = None
        self._closed = False
        self._session_factory: Any = None
        self._thread = threading.Thread(
            target=self._linger_loop, name="textlstm-producer", daemon=True
        )
        self._thread.start()
        self.sent_messages = 0
        self.sent_jobs = 0
        ref = weakref.ref(self)
        atexit.register(lambda: (p := ref()) is not None and p.close())

    # -- the API ------------------------------------------------------------------------

    def submit(
        self,
        texts: Iterable[str | Mapping[str, Any]],
        *,
        model: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        job_id: str | uuid.UUID | None = None,
        priority: str = "normal",
        deadline: datetime | None = None,
        expires: float | timedelta | None = None,
        webhook: str | None = None,
    ) -> uuid.UUID:
        """Validate one job and buffer it; return its id. Arguments as `Client.submit`.

        Returns as soon as the job is buffered; it is on the broker within `linger_ms` (or at
        once when the buffer fills). A job bigger than `max_items` is sent on its own.
        """
        self._raise_pending()
        if self._closed:
            raise ValidationError("this Producer is closed")
        from textlstm.client import prepare_job

        messages = prepare_job(
            self.settings,
            texts,
            model=model,
            metadata=metadata,
            job_id=job_id,
            priority=priority,
            deadline=deadline,
            expires=expires,
            limits=self.limits,
            webhook=webhook,
        )
        model, jid = messages[0].model, messages[0].job_id
        if self.record_jobs and model not in self._models:
            self._check_model(model)
        queue = queue_for(self.settings.queue, priority)
        full: list[ClassifyMessage] | None = None
        with self._lock:
            buf = self._buffers.setdefault(queue, _Buffer())
            started = not buf.messages
            for msg in messages:
                if not buf.messages:
                    buf.since = time.monotonic()
                buf.messages.append(msg)
                buf.items += len(msg.items)
                buf.bytes += _size(msg)
            if buf.items >= self.max_items or buf.bytes >= self.limits.message_max_bytes:
                full = self._take(queue)
            elif started:
                # A new buffer has a new deadline. Otherwise the linger thread already waits
                # for this buffer's: waking it on every submit cost a thread switch per job.
                self._lock.notify()
        if full:
            self._send(queue, full)
        return jid

    def flush(self) -> None:
        """Send everything buffered now; raise BrokerError if a send failed."""
        with self._lock:
            taken = [(q, self._take(q)) for q in list(self._buffers)]
        for queue, messages in taken:
            if messages:
                self._send(queue, messages)
        self._raise_pending()

    def close(self) -> None:
        """Flush and stop the background thread. Safe to call twice; called at exit."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            with self._lock:
                self._closed = True
                self._lock.notify()
            self._thread.join(timeout=5)

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------

    def _take(self, queue: str) -> list[ClassifyMessage]:
        buf = self._buffers.pop(queue, None)
        return buf.messages if buf else []

    def _linger_loop(self) -> None:
        while True:
            due: list[tuple[str, list[ClassifyMessage]]] = []
            with self._lock:
                if self._closed:
                    return
                now = time.monotonic()
                waits = []
                for queue, buf in list(self._buffers.items()):
                    left = buf.since + self.linger_s - now
                    if left <= 0:
                        due.append((queue, self._take(queue)))
                    else:
                        waits.append(left)
                if not due:
                    self._lock.wait(timeout=min(waits) if waits else None)
                    continue
            for queue, messages in due:
                self._send(queue, messages)

    def _envelopes(self, messages: list[ClassifyMessage]) -> list[list[ClassifyMessage]]:
        return pack_envelopes(messages, self.max_items, self.limits.message_max_bytes)

    def _send(self, queue: str, messages: list[ClassifyMessage]) -> None:
        with self._send_lock:
            try:
                if self.record_jobs:
                    self._record(messages)
                self._publish(self._envelopes(messages))
            except BrokerError as exc:
                self._requeue(queue, messages, exc)
            except Exception as exc:  # noqa: BLE001 - a database error: keep the jobs, report
                self._requeue(
                    queue, messages, BrokerError(f"could not record {len(messages)} job(s): {exc}")
                )

    def _requeue(self, queue: str, messages: list[ClassifyMessage], exc: BrokerError) -> None:
        with self._lock:
            buf = self._buffers.setdefault(queue, _Buffer(since=time.monotonic()))
            buf.messages[:0] = messages
            buf.items += sum(len(m.items) for m in messages)
            buf.bytes += sum(_size(m) for m in messages)
            buf.since = time.monotonic() + 1.0  # the linger thread retries in about a second
            self._error = exc

    def _raise_pending(self) -> None:
        if self._error is not None:
            exc, self._error = self._error, None
            raise exc

    def _publish(self, groups: list[list[ClassifyMessage]]) -> None:
        publish_envelopes(self.settings, groups, on_sent=self._count)

    def _count(self, sent: Outgoing) -> None:
        """Called by the publisher after each broker message: counts stay right when a later
        message of the same flush fails."""
        self.sent_messages += 1
        self.sent_jobs += len({m.job_id for m in sent.messages})

    def _sessions(self) -> Any:
        if self._session_factory is None:
            from textlstm.store.db import make_engine, make_session_factory

            self._session_factory = make_session_factory(make_engine(self.settings.database_url))
        return self._session_factory

    def _check_model(self, model: str) -> None:
        from textlstm.store.registry import resolve

        with self._sessions()() as session:
            resolve(session=session, ref=model)  # NotFoundError: refused before buffering
        self._models.add(model)

    def _record(self, messages: list[ClassifyMessage]) -> None:
        from textlstm.store.jobs import add_jobs

        jobs = {
            m.job_id: {
                "job_id": m.job_id,
                "model_ref": m.model,
                "expected": m.total,
                "metadata": m.metadata,
                "submitted_at": m.submitted_at,
                "webhook_url": m.webhook,
            }
            for m in messages
        }
        with self._sessions().begin() as session:
            add_jobs(session=session, jobs=list(jobs.values()))
