"""The micro-batching consumer strategy: Celery glue around `textlstm.serving.microbatch`.

Celery hands every received message of a task to that task's *strategy* (celery-batches uses the
same hook). Ours decodes and validates the message, adds its items to the Batcher and, whenever
a micro-batch is full or its oldest item has waited `max_wait`, runs it through the task (which
calls `textlstm.serving.service.classify_batch`: predict, then one transaction). Messages are
acked only when all their items are committed; a malformed message is moved to the dead-letter
list at once with its reason (and recorded on its job when the job id can be read), as are
items the batch write could not store. A version 2 envelope (parts of several jobs,
`textlstm.wire.messages.parse_body`) enters the batcher as one entry per part that share one ack; a
bad part is refused alone. A message delivered again after its worker died runs alone, after
everything else held is committed (poison-message quarantine, worker/transport.py).
Before a micro-batch runs, the items of jobs cancelled meanwhile are taken out and their
messages acked unrun (textlstm/serving/cancel.py: the cancel stored their rows first).

Everything runs in the consumer's own process and thread (pool `solo`), so a forward pass
simply pauses consumption; prefetch keeps the next messages coming. On warm shutdown the
consumer step `FlushOnShutdown` runs what is buffered and commits before the connection closes.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import bootsteps

from textlstm.broker_options import is_amqp
from textlstm.errors import ValidationError
from textlstm.gc_tuning import tune_gc
from textlstm.ops.amqp_deadletters import DeadLetterPublisher
from textlstm.ops.amqp_scan import RETURNS_HEADER
from textlstm.serving.cancel import CancelledJobs, without_cancelled
from textlstm.serving.metrics import get_metrics
from textlstm.serving.microbatch import Batcher, MicroBatch
from textlstm.serving.retry import ShutdownRequested
from textlstm.serving.stages import BatchStats, StatsWriter
from textlstm.wire.deadletters import DeadLetter, quarantine_reason
from textlstm.wire.messages import ClassifyMessage, Limits, parse_body, parse_timestamp
from textlstm.wire.redis_layout import broker_client, cancelled_job_ids, is_redis_url
from textlstm.wire.salvage import salvage
from worker import acks, kombu_seam, readahead, transport
from worker.acks import Outstanding
from worker.transport import fetch_timer

log = logging.getLogger("textlstm.worker")


class _Handle:
    """What the batcher keeps per message: how to ack it. A version 2 envelope is added to the
    batcher as several messages (one per job part) sharing one handle: it is acked when the
    last of its parts is committed."""

    __slots__ = ("message", "parts")

    def __init__(self, message: Any, parts: int = 1) -> None:
        self.message = message
        self.parts = parts

    def part_done(self) -> bool:
        """Count one part committed; True when the whole broker message is."""
        self.parts -= 1
        return self.parts <= 0

    def ack(self) -> None:
        # Directly, not via the hub's call_soon: on shutdown the loop no longer runs callbacks.
        try:
            self.message.ack()
        except Exception as exc:  # noqa: BLE001 - connection lost: the broker redelivers
            log.warning("could not ack message %s: %s", self.message.delivery_tag, exc)


def ack_all(handles: list[_Handle], outstanding: Outstanding | None = None) -> None:
    """Ack a committed batch's messages, in one Redis round trip per channel on our transport
    (`Channel.ack_many`); on AMQP (`outstanding` given: what this worker holds unsettled) one
    `basic.ack` with `multiple=True` for the batch's contiguous run of delivery tags
    (`worker.acks`) and the rest one by one; any other transport acks one by one. If the round
    trip fails the messages stay in the unacked index and come back after the visibility
    timeout (RabbitMQ: when the connection closes): their rows are committed, so the
    redelivery inserts nothing.
    """
    by_channel: dict[int, list[Any]] = {}
    for h in handles:
        by_channel.setdefault(id(h.message.channel), []).append(h.message)
    for messages in by_channel.values():
        ack_many = getattr(messages[0].channel, "ack_many", None)
        if ack_many is None and outstanding is not None:
            ack_amqp(messages, outstanding)
            continue
        if ack_many is None or len(messages) == 1:
            for m in messages:
                _Handle(m).ack()
            continue
        try:
            ack_many(messages)
        except Exception as exc:  # noqa: BLE001 - redelivered later, stored idempotently
            log.warning("could not ack %d message(s): %s", len(messages), exc)


def ack_amqp(messages: list[Any], outstanding: Outstanding) -> None:
    """Ack the messages of one AMQP channel: their contiguous run of outstanding delivery tags
    in one `basic.ack(multiple=True)` (`acks.split`), the others one by one."""
    channel = messages[0].channel
    by_tag = {m.delivery_tag: m for m in messages}
    if not all(isinstance(tag, int) for tag in by_tag):
        n, rest = None, list(by_tag)
    else:
        n, rest = acks.split(by_tag.keys(), outstanding.of(channel))
    if n is not None:
        try:
            by_tag[n].ack(multiple=True)  # every outstanding delivery up to n: all this batch's
            for tag, m in by_tag.items():
                if tag < n:
                    kombu_seam.mark_acked(m)
        except Exception as exc:  # noqa: BLE001 - connection lost: the broker redelivers
            log.warning("could not ack %d message(s) up to %s: %s", len(by_tag) - len(rest), n, exc)
    for tag in rest:
        _Handle(by_tag[tag]).ack()
    outstanding.settled(channel, by_tag.keys())


def decode_json(message: Any) -> tuple[Any, int, str | None]:
    """The message's Celery body, how many times it has been delivered (1 = first time) and
    the Redis list it came from (None when not known).

    Our transport checked and decoded the body before kombu saw the message
    (`worker.envelope`) and hands it over with the message. On any other transport the body
    goes through kombu's `decode`, which enforces accept_content: JSON only.
    """
    take = getattr(message.channel, "take_body", None)
    found = take(message.delivery_tag) if take is not None else None
    if found is not None:
        return found
    info = message.delivery_info if isinstance(message.delivery_info, dict) else {}
    source = info.get("routing_key")
    return message.decode(), amqp_deliveries(message.headers), source or None


def amqp_deliveries(headers: Any) -> int:
    """How many times a RabbitMQ message has been delivered, this time included (1 = first):
    a quorum queue counts in `x-delivery-count` the times it was returned (its consumer died
    or disconnected holding it, or requeued it), and a message an operator's scan published
    again carries the returns it had before in `textlstm-returns` (`textlstm.ops.amqp_scan`).
    Either header absent or unreadable counts 0 (another broker, a classic queue)."""
    if not isinstance(headers, dict):
        return 1
    return 1 + sum(_returns(headers.get(h)) for h in ("x-delivery-count", RETURNS_HEADER))


def _returns(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class Prefetch:
    """amqp:// only: the prefetch the worker's consumers have, 1 while it takes messages that
    were delivered before ("careful"), the full window otherwise.

    A quorum queue counts a return against *every* message the dead consumer held, not only
    the one that killed it. With a full window, the messages RabbitMQ had sent behind a poison
    message would be counted at each death exactly as often as it is, and quarantined with it.
    So every consumer starts with a prefetch of 1 (Celery's `worker_prefetch_multiplier`,
    `worker.app`), and a message delivered before is taken alone: nothing else is in flight if
    it kills the process. The first message delivered for the first time opens the full window
    (max(worker_prefetch, worker_batch_max_items)); a message delivered again (another worker
    died) closes it. Changing it means consuming again (`kombu_seam.consume_with_prefetch`), done
    from the event loop's timer, never inside a delivery."""

    def __init__(self, consumer: Any, timer: Any, full: int) -> None:
        self.consumer = consumer
        self.timer = timer
        self.full = max(1, full)
        self.current = 1
        self.wanted = 1
        self._tref: Any = None

    def saw(self, deliveries: int) -> None:
        """Note a message delivered `deliveries` times; switch the window after it."""
        self.wanted = 1 if deliveries > 1 else self.full
        if self.wanted != self.current and self._tref is None:
            self._tref = self.timer.call_after(0, self._apply)

    def _apply(self) -> None:
        self._tref = None
        wanted = self.wanted
        if wanted == self.current:
            return
        try:
            kombu_seam.consume_with_prefetch(self.consumer, wanted)
        except Exception as exc:  # noqa: BLE001 - connection lost: the next one starts at 1
            log.warning("could not set the prefetch to %d: %s", wanted, exc)
            return
        self.current = wanted
        log.info("prefetch %d (%s)", wanted, "full" if wanted == self.full else "careful")


def finished(handles: list[_Handle]) -> list[_Handle]:
    """The handles, among those of completed batcher entries, whose every part is done."""
    return [h for h in handles if h.part_done()]


def with_header_deadline(msg: ClassifyMessage, message: Any) -> ClassifyMessage:
    """A message without a body `deadline` takes the Celery `expires` header as its deadline,
    so a foreign producer using Celery's own `expires=` gets the same `expired` rows.

    The header is read by the body's rule (`parse_timestamp`: ISO 8601, UTC if no offset, in
    the range of textlstm/wire/limits.py). One that breaks the rule is ignored with a warning, as
    an unreadable one always was: this runs after the message was accepted, and must not
    raise."""
    headers = message.headers if isinstance(message.headers, dict) else {}
    expires = headers.get("expires")
    if msg.deadline is not None or expires is None:
        return msg
    try:
        deadline = parse_timestamp(expires, "expires header")
    except ValidationError as exc:
        log.warning("job %s: Celery expires header ignored: %s", msg.job_id, exc)
        return msg
    return replace(msg, deadline=deadline)


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, ValidationError) else f"{type(exc).__name__}: {exc}"


def cancel_reader(settings: Any, session_factory: Any = None) -> Callable[[], list[str]]:
    """How this worker reads the cancelled jobs of its queue: on Redis one round trip to the
    set the cancel fills (a short timeout: it runs between micro-batches). On amqp:// there is
    no such set, so it is one bounded SQL read of the jobs cancelled in the last
    `cancel_keep_s` (the same window as the Redis set's), through an index. Nothing to read on
    another broker."""
    if is_amqp(settings.broker_url) and session_factory is not None:
        from textlstm.store.jobs import recently_cancelled_job_ids

        keep = timedelta(seconds=settings.cancel_keep_s)

        def from_sql() -> list[str]:
            with session_factory() as session:
                since = datetime.now(UTC) - keep
                return recently_cancelled_job_ids(session=session, since=since)

        return from_sql
    if not is_redis_url(settings.broker_url):
        return list
    client = broker_client(settings, timeout=1)  # connects on first use
    return lambda: cancelled_job_ids(client, settings.queue)


def _raw_body(message: Any) -> str | None:
    """A delivered message's body as text, for a dead-letter record's `entry`."""
    body = getattr(message, "body", None)
    if isinstance(body, bytes):
        return body.decode("utf-8", "replace")
    return body if isinstance(body, str) else None


def _job_of(part: Any) -> str | None:
    job = part.get("job_id") if isinstance(part, dict) else None
    return job[:64] if isinstance(job, str) else None


class MicroBatchConsumer:
    """Per-process state of the strategy: the batcher, the flush timer and running stats."""

    def __init__(self, task: Any, consumer: Any) -> None:
        s = task.runtime.settings
        self.task = task
        self.timer = kombu_seam.consumer_timer(consumer)
        self.limits = Limits.from_settings(s)
        self.batcher = Batcher(
            max_items=s.worker_batch_max_items,
            max_tokens=s.worker_batch_max_tokens,
            max_wait_s=s.worker_batch_max_wait_ms / 1000,
            idle_s=s.worker_batch_idle_ms / 1000,
        )
        self._tref: Any = None
        self._flushing = False
        self.batches = 0
        self.items = 0
        self._decode_s = 0.0  # decoding and validating messages since the last batch log
        #: One JSON record per batch when Settings.worker_stats_dir is set (the numbers of the
        #: batch log line, for programs: textlstm.serving.stages); None costs nothing.
        self.stats = StatsWriter(s.worker_stats_dir) if s.worker_stats_dir else None
        #: Jobs cancelled (textlstm-admin jobs cancel): their items are acked, not run.
        self.cancelled = CancelledJobs(
            cancel_reader(s, task.runtime.session_factory),
            refresh_s=s.worker_cancel_refresh_ms / 1000,
        )
        self.cancelled_items = 0
        #: Testing only (Settings.worker_test_crash_text): a text that kills the process.
        self.crash_text = s.worker_test_crash_text
        #: amqp:// only: read what RabbitMQ already sent before cutting a batch
        #: (worker/readahead.py); the channel of the last message received, and since when
        #: a batch has been waiting for that read.
        self.read_ahead = is_amqp(s.broker_url)
        self._channel: Any = None
        self._deferred_since: float | None = None
        self._read_tref: Any = None
        #: amqp:// only: delivery tags received and not yet settled, for `multiple=True` acks.
        self.outstanding: Outstanding | None = Outstanding() if self.read_ahead else None
        #: amqp:// only: the poison-message quarantine (the Redis transport's pop does its own),
        #: the careful prefetch it needs, and where dead letters are published.
        self.max_deliveries = s.worker_max_deliveries
        self.prefetch: Prefetch | None = None
        self.amqp_dead: DeadLetterPublisher | None = None
        if self.read_ahead:
            full = max(s.worker_prefetch, s.worker_batch_max_items)
            self.prefetch = Prefetch(consumer, self.timer, full)
            self.amqp_dead = DeadLetterPublisher(s.broker_url, s.queue, s.broker_transport_options)

    # -- receiving -----------------------------------------------------------------------

    def on_message(self, message: Any) -> None:
        started = time.perf_counter()
        if self.outstanding is not None:
            self.outstanding.received(message.channel, message.delivery_tag)
        body = source = None
        try:
            body, deliveries, source = decode_json(message)
            if not (isinstance(body, list | tuple) and len(body) == 3):
                raise ValidationError("not a Celery protocol 2 task body [args, kwargs, embed]")
            args, kwargs = body[0], body[1]
            if not isinstance(args, list | tuple) or len(args) != 1 or kwargs:
                raise ValidationError(
                    "the task takes exactly one positional argument (the message) and no kwargs"
                )
            parsed = parse_body(args[0], limits=self.limits)
        except Exception as exc:  # noqa: BLE001 - any undecodable message is rejected
            self._reject(message, exc, body, source)
            return
        whole = not parsed.messages  # every part refused: the entry itself is dead-lettered
        for part, exc in parsed.rejected:  # bad parts of an envelope; their neighbours go on
            if self._refuse(message, exc, part, whole=whole) is False:
                return  # shutting down: nothing acked, the whole envelope is redelivered
        if whole:
            self._dead_letter(message, "every part of the envelope was refused", "body", source)
            return
        if self.prefetch is not None:
            self.prefetch.saw(deliveries)
            if deliveries > self.max_deliveries:
                self._quarantine(message, args[0], deliveries - 1, source)
                return
        if self.crash_text and any(
            i.text == self.crash_text for m in parsed.messages for i in m.items
        ):
            os.kill(os.getpid(), signal.SIGKILL)  # tests: a process that dies mid-message
        if deliveries > 1:
            # A worker died while holding this message (the transport takes such a message
            # alone): commit everything else first, then run it on its own, so that if it is
            # what kills the process, nothing innocent is in flight with it.
            log.warning(
                "message %s was delivered %d times without an ack (a worker died holding it): "
                "running it alone",
                message.delivery_tag,
                deliveries,
            )
            self.flush(force=True)
        handle = _Handle(message, parts=len(parsed.messages))
        self._decode_s += time.perf_counter() - started
        now = time.monotonic()
        for msg in parsed.messages:
            self.batcher.add(with_header_deadline(msg, message), handle, now)
        self._channel = message.channel
        self.flush(force=deliveries > 1)
        self._arm_timer()

    def record_refusal(self, part: Any, reason: str) -> bool:
        """Error rows for the readable items of a refused message (the transport's hook).
        False when shutdown interrupted the recording (then nothing may be acked)."""
        found = salvage(part)
        if found.job_id is None:
            return True
        from textlstm.serving.service import record_rejection

        rt = self.task.runtime
        try:
            n = record_rejection(
                found,
                reason,
                session_factory=rt.session_factory,
                retry=rt.retry,
                on_finished=rt.notify,
            )
            if n:
                log.info("job %s: %d item(s) stored as errors (rejected message)", found.job_id, n)
        except ShutdownRequested:
            return False  # not acked: redelivered to the next worker, rejected there
        except Exception:
            log.exception("job %s: could not record the rejection", found.job_id)
        return True

    def _reject(self, message: Any, exc: Exception, body: Any, source: str | None) -> None:
        """Refuse a whole broker message: record why on its job (if readable), then
        dead-letter it."""
        args = body[0] if isinstance(body, list | tuple) and body else None
        part = args[0] if isinstance(args, list | tuple) and args else None
        if self._refuse(message, exc, part, whole=True) is not False:
            self._dead_letter(message, _reason(exc), "body", source, part)

    def _refuse(self, message: Any, exc: Exception, part: Any, *, whole: bool) -> bool | None:
        """Log and record the refusal of one message body (or envelope part) on its job;
        a part whose job cannot be read is dead-lettered on its own. False when shutdown
        interrupted the recording (then nothing may be acked)."""
        reason = _reason(exc)
        job = salvage(part).job_id if part is not None else None
        get_metrics().rejected.inc()
        log.error(
            "rejected message %s (job %s): %s",
            message.headers.get("id") if isinstance(message.headers, dict) else "?",
            job or "unreadable",
            reason,
        )
        if part is not None and not self.record_refusal(part, reason):
            return False
        if job is None and not whole:
            self._dead_letter_part(message, part, reason, "part")
        return None

    def _dead_letter(
        self, message: Any, reason: str, stage: str, source: str | None, part: Any = None
    ) -> None:
        """Move a whole delivered message to the dead-letter list, as its ack."""
        channel = message.channel
        headers = message.headers if isinstance(message.headers, dict) else {}
        if self.amqp_dead is not None:
            record = DeadLetter.new(stage, reason, list=source, task_id=headers.get("id"),
                                    job_id=_job_of(part), entry=_raw_body(message),
                                    body=part if isinstance(part, dict) else None)  # fmt: skip
            self._dead_letter_amqp(message, record)
            return
        if not hasattr(channel, "dead_letter_delivered"):
            self._reject_message(message)  # another transport: its own dead-lettering, if any
            if self.outstanding is not None:
                self.outstanding.settled(channel, [message.delivery_tag])
            return
        record = DeadLetter.new(stage, reason, id=message.delivery_tag, list=source,
                                task_id=headers.get("id"), job_id=_job_of(part))  # fmt: skip
        channel.dead_letter_delivered(message, record)

    def _dead_letter_amqp(self, message: Any, record: DeadLetter) -> None:
        """On amqp://: publish the record to the dead-letter queue, then ack the message it
        replaces. When the record cannot be published, reject the message without requeueing
        it: RabbitMQ dead-letters it itself (at least once), with `x-death` saying `rejected`
        instead of the reason, which the log line above still has."""
        assert self.amqp_dead is not None
        if self.amqp_dead.publish([record]):
            transport.count_dead([record.stage])
            _Handle(message).ack()
        else:
            self._reject_message(message)
        if self.outstanding is not None:
            self.outstanding.settled(message.channel, [message.delivery_tag])

    def _quarantine(self, message: Any, part: Any, taken: int, source: str | None) -> None:
        """amqp:// only: a message delivered `taken` times before without an ack (each time a
        worker died holding it, alone: `Prefetch`) is not run again. Its job records the
        reason (error rows, as on Redis), and it moves to the dead-letter queue, as its ack."""
        reason = quarantine_reason(taken)
        log.error("message %s on %s (job %s) %s; moved to the dead-letter queue",
                  message.delivery_tag, source, _job_of(part) or "unreadable",
                  reason)  # fmt: skip
        if not self.record_refusal(part, reason):
            return  # shutting down: not acked, delivered again to the next worker
        headers = message.headers if isinstance(message.headers, dict) else {}
        record = DeadLetter.new("poison", reason, list=source, task_id=headers.get("id"),
                                job_id=_job_of(part), deliveries=taken,
                                entry=_raw_body(message),
                                body=part if isinstance(part, dict) else None)  # fmt: skip
        self._dead_letter_amqp(message, record)

    def _dead_letter_part(self, message: Any, part: Any, reason: str, stage: str) -> None:
        """Record one part of an envelope on the dead-letter list (the message itself is
        acked once its other parts are committed)."""
        body = part if isinstance(part, dict) else {"unreadable part": repr(part)[:2000]}
        headers = message.headers if isinstance(message.headers, dict) else {}
        record = DeadLetter.new(stage, reason, task_id=headers.get("id"), job_id=_job_of(part),
                                body=body)  # fmt: skip
        if self.amqp_dead is not None:
            if self.amqp_dead.publish([record]):
                transport.count_dead([stage])
            return
        dead_letter = getattr(message.channel, "dead_letter", None)
        if dead_letter is None:
            return
        dead_letter([(record, None)])

    @staticmethod
    def _reject_message(message: Any) -> None:
        try:
            message.reject(requeue=False)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not reject message: %s", exc)

    # -- flushing ------------------------------------------------------------------------

    def _arm_timer(self) -> None:
        deadline = self.batcher.deadline()
        if deadline is None or self._tref is not None:
            return
        self._tref = self.timer.call_after(max(0.0, deadline - time.monotonic()), self._on_timer)

    def _on_timer(self) -> None:
        self._tref = None
        self.flush()
        self._arm_timer()

    def flush(self, *, force: bool = False) -> None:
        if self._flushing:  # a timer firing inside a flush (e.g. during a DB retry sleep)
            return
        self._flushing = True
        try:
            while not self._read_first(force):
                batch = self.batcher.take(time.monotonic(), force=force)
                if batch is None or not self._run(batch):
                    return
        finally:
            self._flushing = False

    def _read_first(self, force: bool) -> bool:
        """On amqp://: True when RabbitMQ has already sent more than was read, so the next
        batch waits for the event loop to read it (a timer comes back here), at most
        readahead.MAX_DEFER_S at a time; the batcher then cuts high items first among all
        of them (worker/readahead.py)."""
        if force or not self.read_ahead or not readahead.more_to_read(self._channel):
            self._deferred_since = None
            return False
        now = time.monotonic()
        if self._deferred_since is None:
            self._deferred_since = now
        elif now - self._deferred_since >= readahead.MAX_DEFER_S:
            self._deferred_since = None
            return False
        if self._read_tref is None:
            self._read_tref = self.timer.call_after(0, self._after_read)
        return True

    def _after_read(self) -> None:
        self._read_tref = None
        self.flush()
        self._arm_timer()

    def _skip_cancelled(self, whole: MicroBatch) -> MicroBatch | None:
        """The part of `whole` to classify: without the items of cancelled jobs, whose rows
        the cancel already stored (textlstm.serving.cancel). None when nothing is left."""
        cancelled = self.cancelled.get(time.monotonic())
        batch, dropped = without_cancelled(whole, cancelled)
        if dropped:
            self.cancelled_items += dropped
            try:
                get_metrics().cancelled.inc(dropped)
            except Exception:  # noqa: BLE001 - metrics must never stop the work
                log.exception("could not record metrics")
            jobs = sorted(
                str(j) for j in {s.entry.message.job_id for s in whole.slices} & cancelled
            )
            log.info(
                "%d item(s) of cancelled job(s) %s acked without classifying",
                dropped,
                ", ".join(jobs[:5]) + (" …" if len(jobs) > 5 else ""),
            )
        return batch

    def _run(self, whole: MicroBatch) -> bool:
        batch = self._skip_cancelled(whole)
        if batch is None:  # every item is of a cancelled job: nothing to run or store
            ack_all(finished(self.batcher.complete(whole)), self.outstanding)
            return True
        try:
            report = self.task.run_batch(batch)
        except ShutdownRequested as exc:
            held = {id(h) for h in self.batcher.drop_all()}
            log.warning("%s; %d message(s) left unacked for redelivery", exc, len(held))
            return False
        except Exception:
            log.exception("micro-batch of %d item(s) failed; storing them as errors", len(batch))
            try:
                report = self.task.run_batch(batch, fail_reason="internal error in the worker")
            except Exception as exc:
                log.exception("could not store the errors either; dead-lettering the items")
                why = f"could not be stored: {_reason(exc)}"
                self._dead_letter_slices(batch, lambda msg: why)
                ack_all(finished(self.batcher.complete(whole)), self.outstanding)
                return True
        self.batches += 1
        self.items += report.items
        try:
            get_metrics().observe_batch(report)
        except Exception:  # noqa: BLE001 - metrics must never stop the work
            log.exception("could not record metrics")
        decode_ms, fetch_ms = self._decode_s * 1000, fetch_timer.take_ms()
        if self.stats is not None:
            self.stats.write(BatchStats.from_report(report, decode_ms=decode_ms, fetch_ms=fetch_ms))
        # For operators only: programs read the records above, never this line.
        log.info(
            "batch size=%d messages=%d tokens=%d model=%s ok=%d errors=%d inserted=%d "
            "duplicates=%d forward_ms=%.1f db_ms=%.1f db_attempts=%d mean_size=%.2f "
            "tokenize_ms=%.1f decode_ms=%.1f fetch_ms=%.1f",
            report.items,
            report.messages,
            report.tokens,
            report.model or f"{report.model_ref} (unavailable)",
            report.ok,
            report.errors,
            report.inserted,
            report.duplicates,
            report.forward_ms,
            report.db_ms,
            report.db_attempts,
            self.items / self.batches,
            report.tokenize_ms,
            decode_ms,
            fetch_ms,
        )
        self._decode_s = 0.0
        if report.unstored:
            self._dead_letter_slices(batch, report.unstored_reason)
        ack_all(finished(self.batcher.complete(whole)), self.outstanding)
        # After the commit and the acks: one pipelined PUBLISH for the jobs this batch finished;
        # webhooks are only a wake-up for the sender thread (textlstm/serving/webhooks.py).
        self.task.runtime.notify(report.finished)
        return True

    def _dead_letter_slices(
        self, batch: MicroBatch, reason_for: Callable[[ClassifyMessage], str | None]
    ) -> None:
        """Record on the dead-letter list the items of `batch` that got no row: those of the
        messages `reason_for` gives a reason for."""
        by_channel: dict[int, tuple[Any, list[tuple[DeadLetter, None]]]] = {}
        for sl in batch.slices:
            msg = sl.entry.message
            reason = reason_for(msg)
            if reason is None:
                continue
            body = replace(msg, items=sl.items).to_json()
            message = sl.entry.handle.message
            headers = message.headers if isinstance(message.headers, dict) else {}
            record = DeadLetter.new("store", reason, task_id=headers.get("id"),
                                    job_id=str(msg.job_id), body=body)  # fmt: skip
            channel = message.channel
            by_channel.setdefault(id(channel), (channel, []))[1].append((record, None))
            log.error("job %s: %d item(s) dead-lettered: %s", msg.job_id, len(sl.items), reason)
        for channel, records in by_channel.values():
            if self.amqp_dead is not None:  # amqp://: the dead-letter queue
                if self.amqp_dead.publish(r for r, _ in records):
                    transport.count_dead(r.stage for r, _ in records)
                continue
            dead_letter = getattr(channel, "dead_letter", None)
            if dead_letter is not None:
                dead_letter(records)

    def drain(self) -> None:
        """Warm shutdown: run and commit whatever is buffered, then ack it."""
        if len(self.batcher):
            log.info("draining %d buffered message(s) before exit", len(self.batcher))
            self.flush(force=True)
        log.info(
            "worker stats: %d batch(es), %d item(s), mean batch size %.2f",
            self.batches,
            self.items,
            self.items / self.batches if self.batches else 0.0,
        )


def strategy(task: Any, app: Any, consumer: Any, **kwargs: Any) -> Any:
    """Celery strategy factory (`Task.Strategy`): called when the consumer (re)connects."""
    old = kombu_seam.batching_of(task)
    if old is not None:
        # Reconnected: deliveries on the old channel cannot be acked; the broker restores them.
        dropped = {id(h) for h in old.batcher.drop_all()}
        if dropped:
            log.warning("reconnected: %d buffered message(s) will be redelivered", len(dropped))
    task.runtime  # noqa: B018 - build device, engine and model cache now, before any message
    warmup = task.runtime.settings.worker_warmup_model
    if warmup and old is None:
        task.runtime.warm_up(warmup)
    if old is None:
        tune_gc(task.runtime.settings.worker_gc_threshold)
    batching = MicroBatchConsumer(task, consumer)
    kombu_seam.set_batching(task, batching)
    transport.refusal_hook = batching.record_refusal
    return kombu_seam.message_handler(batching.on_message)


class FlushOnShutdown(bootsteps.StartStopStep):
    """Consumer step that drains the batcher while the broker connection is still open.

    Consumer steps stop in reverse order, so requiring Tasks puts this stop before the task
    consumer is cancelled and the connection closed.
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def stop(self, c: Any) -> None:
        for task in c.app.tasks.values():
            batching = kombu_seam.batching_of(task)
            if batching is not None:
                try:
                    batching.drain()
                except Exception:
                    log.exception("drain failed; buffered messages will be redelivered")
