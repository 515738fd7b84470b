"""Producer and results API: submit jobs knowing only the broker; read results from SQL.

    from textlstm import client
    job_id = client.submit(["great film", {"id": "r-2", "text": "dull"}], model="sentiment")
    client.wait(job_id, timeout=60)           # -> JobStatus once done / partial / failed
    for row in client.results(job_id): ...    # -> ItemResult, in item order

Importable without torch and without the worker package: it publishes by task *name*
(``textlstm.classify``) through the client's one publisher (`textlstm.client.publisher`) and
its Celery app, which has no result backend (`textlstm.client.celery_app`). The whole job is
validated before the first message is sent. When TEXTLSTM_DATABASE_URL is set explicitly the job
row is recorded as `queued` before publishing (and an unknown model is refused up front);
otherwise the first worker to receive a message creates it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from textlstm.broker_options import is_amqp
from textlstm.client.backpressure import Gate
from textlstm.client.known_refs import KnownRefs
from textlstm.client.publisher import publish_messages
from textlstm.errors import ConfigError, NotFoundError, ValidationError
from textlstm.settings import Settings, get_settings
from textlstm.wire.events import FINAL_STATUSES, finished_channel
from textlstm.wire.messages import (
    ClassifyMessage,
    Limits,
    at_field,
    build_messages,
    new_id,
    parse_job_id,
    parse_message,
)
from textlstm.wire.queues import queue_for
from textlstm.wire.redis_layout import broker_client, is_redis_url

FINISHED = frozenset(FINAL_STATUSES)


@dataclass(frozen=True)
class JobStatus:
    """A job's progress as stored in SQL (counts are items, not messages)."""

    job_id: uuid.UUID
    status: str
    model_ref: str
    model: str | None  # resolved "name@version", once a worker has picked it
    expected: int
    ok: int
    errors: int
    submitted_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    metadata: dict[str, Any] | None
    expired: int = 0  # items not started before the job's deadline (counted in `errors` too)
    cancelled: int = 0  # items never classified: the job was cancelled (in `errors` too)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def done(self) -> int:
        return self.ok + self.errors

    def to_json(self) -> dict[str, Any]:
        """The document `textlstm-admin jobs show --json` prints (less the webhook) and the
        HTTP gateway returns: one shape for every reader of a job's status."""
        return {
            "job_id": str(self.job_id),
            "status": self.status,
            "model_ref": self.model_ref,
            "model": self.model,
            "expected": self.expected,
            "ok": self.ok,
            "errors": self.errors,
            "expired": self.expired,
            "cancelled": self.cancelled,
            "submitted_at": self.submitted_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "metadata": self.metadata,
        }


@dataclass(frozen=True)
class ItemResult:
    """One item's prediction (or error) as stored in SQL."""

    item_index: int
    external_id: str | None
    status: str
    label: str | None
    score: float | None
    probabilities: dict[str, float] | None
    error: str | None
    model: str | None
    latency_ms: float | None
    job_id: uuid.UUID | None = None

    def to_json(self) -> dict[str, Any]:
        """One JSON Lines row of `textlstm-admin results --format jsonl` and of the gateway's
        results (the same function, so the two outputs are equal byte for byte)."""
        d = asdict(self)
        d["job_id"] = str(d["job_id"]) if d["job_id"] else None
        return d

    def csv_row(self) -> list[Any]:
        """One CSV row, in CSV_COLUMNS order: None as empty, probabilities as JSON."""
        d = asdict(self)
        probs = d["probabilities"]
        d["probabilities"] = json.dumps(probs, ensure_ascii=False) if probs else ""
        return ["" if d[c] is None else d[c] for c in CSV_COLUMNS]


#: The CSV header of an export (`results --format csv`, the gateway's text/csv).
CSV_COLUMNS = (
    "job_id",
    "item_index",
    "external_id",
    "status",
    "label",
    "score",
    "model",
    "latency_ms",
    "error",
    "probabilities",
)


def _gate(settings: Settings, queue: str, policy: str | None, timeout: float | None) -> Gate:
    """Backpressure for `queue`: reads its depth only when a limit is set, on Redis by `LLEN`,
    on RabbitMQ by a passive `queue.declare` (its `message_count`: messages ready, not yet
    delivered to a worker, as `LLEN` counts them), against the same limit."""
    limit = settings.queue_max_pending
    amqp = is_amqp(settings.broker_url)

    def depth() -> int:
        from redis.exceptions import RedisError

        from textlstm.client.publisher import broker_error

        try:
            return _amqp_depth() if amqp else _depth()
        except (RedisError, OSError) as exc:  # one line, as when the send itself fails
            raise broker_error(settings, f"read the depth of queue {queue!r}", exc) from None

    def _depth() -> int:
        from textlstm.wire.redis_layout import queue_depths

        client = broker_client(settings)
        try:
            return queue_depths(client, [queue])[queue]
        finally:
            client.close()

    def _amqp_depth() -> int:
        from textlstm.broker_options import amqp_queue_depths

        try:
            return amqp_queue_depths(
                settings.broker_url, [queue], settings.broker_transport_options
            )[queue]
        except OSError:
            raise
        except Exception as exc:  # noqa: BLE001 - kombu's and py-amqp's are no OSError
            raise OSError(str(exc)) from exc

    if limit and not (amqp or is_redis_url(settings.broker_url)):
        raise ConfigError(
            "TEXTLSTM_QUEUE_MAX_PENDING needs a Redis or RabbitMQ broker (it reads the queue depth)"
        )
    return Gate(
        queue=queue,
        limit=limit,
        policy=policy or settings.queue_full_policy,
        timeout_s=settings.queue_full_timeout_s if timeout is None else timeout,
        depth=depth,
    )


def prepare_job(
    settings: Settings,
    texts: Iterable[str | Mapping[str, Any]],
    *,
    model: str | None,
    metadata: Mapping[str, Any] | None,
    job_id: str | uuid.UUID | None,
    priority: str,
    deadline: datetime | None,
    expires: float | timedelta | None,
    limits: Limits | None = None,
    webhook: str | None = None,
) -> list[ClassifyMessage]:
    """Validate a whole job the way every producer does (`Client.submit`, `Producer.submit`)
    and split it into messages: model default, job id, deadline from `expires`. `limits`
    defaults to the settings' (a caller submitting thousands of jobs passes its own copy)."""
    jid = at_field("job_id", parse_job_id, job_id) if job_id is not None else new_id()
    model = model or settings.default_model
    if not model:
        raise ValidationError(
            "no model given: pass model=... or set TEXTLSTM_DEFAULT_MODEL", field="model"
        )
    now = datetime.now(UTC)
    if expires is not None:
        if deadline is not None:
            raise ValidationError("give deadline or expires, not both", field="expires")
        seconds = expires.total_seconds() if isinstance(expires, timedelta) else expires
        try:
            deadline = now + timedelta(seconds=float(seconds))
        except (TypeError, ValueError, OverflowError):  # nan, inf, 1e300, "soon"
            raise ValidationError(
                f"expires must be a number of seconds or a timedelta, got {seconds!r:.40}",
                field="expires",
            ) from None
    return build_messages(
        texts,
        job_id=jid,
        model=model,
        metadata=metadata,
        limits=limits or Limits.from_settings(settings),
        submitted_at=now,
        priority=priority,
        deadline=deadline,
        webhook=webhook,
    )


def prepare_jobs(
    settings: Settings, jobs: Sequence[Mapping[str, Any]], limits: Limits
) -> list[list[ClassifyMessage]]:
    """`prepare_job` for each of several jobs (mappings of `Client.submit`'s arguments), its
    messages in order; a ValidationError's field is `jobs[i].<field>`, and a job id given
    twice is refused (`Client.submit_many`)."""
    out: list[list[ClassifyMessage]] = []
    seen: dict[uuid.UUID, int] = {}
    for i, spec in enumerate(jobs):
        args = dict(spec)
        texts = args.pop("texts", None)
        try:
            if texts is None:
                raise ValidationError("give the job's texts", field="texts")
            messages = prepare_job(
                settings,
                texts,
                model=args.pop("model", None),
                metadata=args.pop("metadata", None),
                job_id=args.pop("job_id", None),
                priority=args.pop("priority", "normal"),
                deadline=args.pop("deadline", None),
                expires=args.pop("expires", None),
                limits=limits,
                webhook=args.pop("webhook", None),
            )
            if args:
                raise ValidationError(f"unknown argument {sorted(args)[0]!r}")
        except ValidationError as exc:
            inner = getattr(exc, "field", None)
            raise ValidationError(
                str(exc), field=f"jobs[{i}]" + (f".{inner}" if inner else "")
            ) from None
        jid = messages[0].job_id
        if jid in seen:
            raise ValidationError(
                f"job id {jid} is already job {seen[jid]} of this batch", field=f"jobs[{i}].job_id"
            )
        seen[jid] = i
        out.append(messages)
    return out


def status_from_row(job: Any, model: str | None) -> JobStatus:
    """A job row (store.models.Job) as a JobStatus; `model` the resolved version, if known."""
    return JobStatus(
        job_id=job.id,
        status=job.status,
        model_ref=job.model_ref,
        model=model,
        expected=job.expected_count,
        ok=job.ok_count,
        errors=job.error_count,
        submitted_at=job.submitted_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        metadata=job.meta,
        expired=job.expired_count,
        cancelled=job.cancelled_count,
    )


@dataclass(frozen=True)
class WebhookStatus:
    """A job's webhook delivery as recorded in SQL (`url` shown as its origin only)."""

    url: str
    state: str  # pending | delivered | failed
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "state": self.state,
            "attempts": self.attempts,
            "last_status_code": self.last_status_code,
            "last_error": self.last_error,
            "next_attempt_at": self.next_attempt_at.isoformat() if self.next_attempt_at else None,
            "delivered_at": self.delivered_at.isoformat() if self.delivered_at else None,
        }


@dataclass(frozen=True)
class CancelResult:
    """What `Client.cancel` did: `cancelled` items stored as `cancelled` by this call (0 when
    the job was already final), the job's status before (`previous`) and after (`status`)."""

    job_id: uuid.UUID
    previous: str
    status: str
    cancelled: int
    ok: int
    expected: int

    @property
    def changed(self) -> bool:
        """True when this call cancelled the job; False when it was already final."""
        return self.previous != self.status


class Client:
    """Producer + results reader bound to one Settings (the module functions use the default).

    Calls share one engine per database URL per process (`store.db.shared_session_factory`)
    unless `session_factory` is given (the HTTP gateway passes one with its own pool size): a
    call reuses a pooled connection instead of connecting (and initialising the dialect) each
    time, which cost ~30 ms a submit on PostgreSQL (bench/results/gateway.md).
    """

    def __init__(
        self, settings: Settings | None = None, *, session_factory: Any | None = None
    ) -> None:
        self.settings = settings or get_settings()
        self.session_factory = session_factory
        # References found registered lately: one job after another to the same model costs
        # no lookup (only the check is cached; the worker resolves the reference itself).
        self.known_refs = KnownRefs()

    @contextmanager
    def session(self) -> Iterator[Any]:
        """One transaction (committed on success), database errors as one StoreError line."""
        from textlstm.store.db import shared_session_factory, translate_db_errors

        url = self.settings.database_url
        factory = self.session_factory
        if factory is None:
            factory = shared_session_factory(
                url, sqlite_busy_timeout_ms=self.settings.sqlite_busy_timeout_ms
            )
        with translate_db_errors(url), factory.begin() as session:
            yield session

    def submit(
        self,
        texts: Iterable[str | Mapping[str, Any]],
        *,
        model: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        job_id: str | uuid.UUID | None = None,
        record_job: bool | None = None,
        priority: str = "normal",
        deadline: datetime | None = None,
        expires: float | timedelta | None = None,
        on_full: str | None = None,
        full_timeout: float | None = None,
        webhook: str | None = None,
    ) -> uuid.UUID:
        """Validate `texts`, split them into messages and enqueue them; return the job id.

        `model` defaults to TEXTLSTM_DEFAULT_MODEL. `record_job` defaults to "only if
        TEXTLSTM_DATABASE_URL was set explicitly". Passing the same `job_id` again re-sends the
        job safely: workers store each item once.

        `priority` ("high", "normal", "bulk") picks the queue; workers drain higher ones first.
        `deadline` (an aware datetime) or `expires` (seconds or a timedelta from now): items not
        started by then are stored as `expired` instead of being classified. `on_full`
        ("refuse" or "block") and `full_timeout` override the backpressure settings for this
        call; QueueFullError says what happened. `webhook`: an http(s) URL the worker that
        finishes the job POSTs the signed final event to (docs/notify.md).
        """
        messages = prepare_job(
            self.settings,
            texts,
            model=model,
            metadata=metadata,
            job_id=job_id,
            priority=priority,
            deadline=deadline,
            expires=expires,
            webhook=webhook,
        )
        jid = messages[0].job_id
        queue = queue_for(self.settings.queue, priority)
        if on_full not in (None, "refuse", "block"):
            raise ValidationError(f"on_full must be 'refuse' or 'block', got {on_full!r}")
        gate = _gate(self.settings, queue, on_full, full_timeout)
        if gate.policy == "refuse":  # before the job row is written: a refusal leaves nothing
            gate.admit(len(messages), sent=0, total=len(messages))
        if self.settings.database_configured if record_job is None else record_job:
            self._record_job(messages[0])
        publish_messages(self.settings, messages, gate=gate)
        return jid

    def submit_many(
        self,
        jobs: Sequence[Mapping[str, Any]],
        *,
        on_full: str | None = None,
        full_timeout: float | None = None,
    ) -> list[uuid.UUID]:
        """Validate several jobs, record their rows in one statement and publish them as
        envelopes (as the batching `Producer` flushes); return their ids in order.

        Each mapping holds `Client.submit`'s arguments (`texts` plus any of model, metadata,
        job_id, priority, deadline, expires, webhook). All or nothing: every job is validated
        and its model resolved before anything is written or sent, and a ValidationError's
        `field` starts with `jobs[i].`. One call costs one database transaction and one
        broker round trip per priority instead of one each per job: what the gateway's
        `POST /v1/jobs:batch` does (docs/gateway.md#measured). Jobs of several priorities go
        out one queue after another: a broker failure between them leaves the first queues'
        jobs sent (send the batch again with the same job ids: workers store each item once).
        """
        from textlstm.client.producer import pack_envelopes
        from textlstm.client.publisher import publish_envelopes

        limits = Limits.from_settings(self.settings)
        per_queue: dict[str, list[ClassifyMessage]] = {}
        ids: list[uuid.UUID] = []
        for messages in prepare_jobs(self.settings, jobs, limits):
            ids.append(messages[0].job_id)
            queue = queue_for(self.settings.queue, messages[0].priority)
            per_queue.setdefault(queue, []).extend(messages)
        if on_full not in (None, "refuse", "block"):
            raise ValidationError(f"on_full must be 'refuse' or 'block', got {on_full!r}")
        sends = []
        for queue, messages in per_queue.items():
            groups = pack_envelopes(messages, limits.message_max_items, limits.message_max_bytes)
            gate = _gate(self.settings, queue, on_full, full_timeout)
            if gate.policy == "refuse":  # before the rows are written: a refusal leaves nothing
                gate.admit(len(groups), sent=0, total=len(groups))
            sends.append((groups, gate))
        if self.settings.database_configured:
            self._record_jobs([m for ms in per_queue.values() for m in ms], ids)
        for groups, gate in sends:
            publish_envelopes(self.settings, groups, gate=gate)
        return ids

    def _record_jobs(self, messages: list[ClassifyMessage], order: list[uuid.UUID]) -> None:
        from textlstm.store.jobs import add_jobs
        from textlstm.store.registry import resolve

        rows = {
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
        with self.session() as session:
            for ref in sorted({m.model for m in messages} - self._known(messages)):
                try:
                    resolve(session=session, ref=ref)  # unknown model: refuse before enqueueing
                except NotFoundError as exc:
                    first = min(order.index(j) for j, r in rows.items() if r["model_ref"] == ref)
                    raise ValidationError(str(exc), field=f"jobs[{first}].model") from None
                self.known_refs.add(ref)
            add_jobs(session=session, jobs=list(rows.values()))

    def _known(self, messages: list[ClassifyMessage]) -> set[str]:
        return {m.model for m in messages if m.model in self.known_refs}

    def _record_job(self, first: ClassifyMessage) -> None:
        from textlstm.store.jobs import record_job
        from textlstm.store.registry import resolve

        with self.session() as session:
            if first.model not in self.known_refs:
                resolve(session=session, ref=first.model)  # unknown model: refuse before sending
                self.known_refs.add(first.model)
            record_job(
                session=session,
                job_id=first.job_id,
                model_ref=first.model,
                expected=first.total,
                metadata=first.metadata,
                submitted_at=first.submitted_at,
                webhook_url=first.webhook,
            )

    def status(self, job_id: str | uuid.UUID) -> JobStatus:
        """The job's status and counts; NotFoundError if no such job (yet)."""
        from textlstm.store.jobs import get_job
        from textlstm.store.model_versions import get_model_version_by_id

        jid = parse_job_id(job_id)
        with self.session() as session:
            job = get_job(session=session, job_id=jid)
            model = None
            if job.model_version_id is not None:
                mv = get_model_version_by_id(session=session, model_version_id=job.model_version_id)
                model = mv.ref if mv else None
            return status_from_row(job, model)

    def webhook(self, job_id: str | uuid.UUID) -> WebhookStatus | None:
        """The job's webhook delivery, or None (no webhook, or the job is not final yet)."""
        from textlstm.store.events import get_delivery
        from textlstm.wire.events import url_origin

        with self.session() as session:
            d = get_delivery(session=session, job_id=parse_job_id(job_id))
            if d is None:
                return None
            return WebhookStatus(
                url_origin(d.url),
                d.state,
                d.attempts,
                d.last_status_code,
                d.last_error,
                d.next_attempt_at if d.state == "pending" else None,
                d.delivered_at,
            )

    def cancel(self, job_id: str | uuid.UUID) -> CancelResult:
        """Cancel a job: its items without a row are stored as `cancelled` (never classified),
        the rows already stored stay, and the job ends `cancelled`. Then the workers are told
        (a Redis set they read at most every TEXTLSTM_WORKER_CANCEL_REFRESH_MS, 500 ms by
        default) and ack the job's remaining messages without running the model.

        Idempotent: a job already final (`done`, `cancelled`, …) is left as it is and the
        result says so (`changed` is False). NotFoundError if SQL holds no such job; a
        BrokerError when SQL was updated but Redis could not be told: the job is cancelled
        regardless (workers then classify its remaining items and store nothing), and calling
        cancel again tells them.
        """
        from textlstm.store.jobs import cancel_job

        jid = parse_job_id(job_id)
        with self.session() as session:
            out = cancel_job(session=session, job_id=jid)
        if out.finished:  # this cancel ended the job: its one final event, after the commit
            self._publish_final([(f.job_id, f.status) for f in out.finished])
        if out.status == "cancelled":  # also when it already was: finishes a cancel cut short
            self._tell_workers(jid)
        return CancelResult(jid, out.previous, out.status, out.cancelled, out.ok, out.expected)

    def _publish_final(self, events: list[tuple[uuid.UUID, str]]) -> None:
        """Best effort: a waiter that misses the event re-reads SQL within 2 s (RECHECK_S)."""
        from textlstm.wire.events import publish_finished

        try:
            client = broker_client(self.settings)
            try:
                publish_finished(client, self.settings.queue, events)
            finally:
                client.close()
        except Exception:  # noqa: BLE001, S110 - the job is cancelled in SQL regardless
            pass

    def _tell_workers(self, job_id: uuid.UUID) -> None:
        from textlstm.errors import BrokerError
        from textlstm.settings import mask_url
        from textlstm.wire.redis_layout import mark_cancelled

        if not is_redis_url(self.settings.broker_url):
            return  # workers on another broker cannot read the set either
        try:
            client = broker_client(self.settings)
            try:
                mark_cancelled(
                    client,
                    self.settings.queue,
                    str(job_id),
                    now=time.time(),
                    keep_s=self.settings.cancel_keep_s,
                )
            finally:
                client.close()
        except Exception as exc:  # noqa: BLE001 - reported as one line
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BrokerError(
                f"job {job_id} is cancelled in the database, but the workers could not be "
                f"told through {mask_url(self.settings.broker_url)} ({first}); run the cancel "
                "again"
            ) from exc

    def iter_results(
        self, job_id: str | uuid.UUID, *, after: int | None = None
    ) -> Iterator[ItemResult]:
        """Stream a job's stored predictions in item order (may be partial while running);
        `after`: only items with a higher index (the cursor of a paginated reader)."""
        from textlstm.store.results import Selection

        jid = parse_job_id(job_id)
        return self._iter(Selection(job_id=jid, after_index=after), check_job=jid)

    def export(
        self,
        *,
        job_id: str | uuid.UUID | None = None,
        model: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        max_score: float | None = None,
    ) -> Iterator[ItemResult]:
        """Stream stored predictions selected by job, model, time and score, in constant memory.

        `model` is any reference: `name@3` or `name@alias` selects that version, a bare `name`
        every version of it. `since`/`until` bound when rows were stored (aware datetimes;
        `until` excluded). `max_score` keeps items whose top probability is at most that, e.g.
        0.6 for the low-confidence ones to send for labelling. Rows come job by job, each in
        item order.
        """
        from textlstm.store.model_versions import list_model_versions
        from textlstm.store.registry import resolve
        from textlstm.store.results import Selection
        from textlstm.wire.refs import parse_model_ref

        if max_score is not None and not 0.0 <= max_score <= 1.0:
            raise ValidationError(f"max_score must be between 0 and 1, got {max_score}")
        for name, when in (("since", since), ("until", until)):
            if when is not None and when.tzinfo is None:
                raise ValidationError(f"{name} must be timezone-aware, got {when.isoformat()}")
        versions: list[int] | None = None
        if model is not None:
            ref = parse_model_ref(model)
            with self.session() as session:
                if ref.version is None and ref.alias is None:
                    versions = [mv.id for mv in list_model_versions(session=session, name=ref.name)]
                    if not versions:
                        raise NotFoundError(f"model {ref.name!r} is not registered")
                else:
                    versions = [resolve(session=session, ref=ref).id]
        jid = parse_job_id(job_id) if job_id is not None else None
        selection = Selection(
            job_id=jid, model_version_ids=versions, since=since, until=until, max_score=max_score
        )
        return self._iter(selection, check_job=jid)

    def _iter(self, selection: Any, *, check_job: uuid.UUID | None) -> Iterator[ItemResult]:
        from textlstm.store.jobs import get_job

        if check_job is not None:  # an unknown job is an error now, not an empty stream later
            with self.session() as session:
                get_job(session=session, job_id=check_job)
        return self._rows(selection)

    def _rows(self, selection: Any) -> Iterator[ItemResult]:
        from textlstm.store.model_versions import get_model_version_by_id
        from textlstm.store.results import iter_selected

        with self.session() as session:
            refs: dict[int, str] = {}
            for p in iter_selected(session=session, selection=selection):
                model = None
                if p.model_version_id is not None:
                    if p.model_version_id not in refs:
                        mv = get_model_version_by_id(
                            session=session, model_version_id=p.model_version_id
                        )
                        refs[p.model_version_id] = mv.ref if mv else "?"
                    model = refs[p.model_version_id]
                yield ItemResult(
                    item_index=p.item_index,
                    external_id=p.external_id,
                    status=p.status,
                    label=p.label,
                    score=p.score,
                    probabilities=p.probabilities,
                    error=p.error,
                    model=model,
                    latency_ms=p.latency_ms,
                    job_id=p.job_id,
                )

    def results(self, job_id: str | uuid.UUID) -> list[ItemResult]:
        return list(self.iter_results(job_id))

    def wait(
        self, job_id: str | uuid.UUID, *, timeout: float = 60.0, poll_interval: float = 0.5
    ) -> JobStatus:
        """Wait until the job is final (done/partial/failed/expired/cancelled); raise
        TimeoutError after `timeout` s.

        Woken by the job's final event: it subscribes to the job's Redis channel *before* it
        reads the job from SQL, so an event published meanwhile is not missed, then sleeps on
        the channel, re-reading SQL every `RECHECK_S` in case the event was lost (a worker that
        died between its commit and its publish). Without Redis it polls SQL every
        `poll_interval` s. A job not yet in the database counts as pending (without a database
        URL at submission the first worker creates the row).
        """
        jid = parse_job_id(job_id)
        deadline = time.monotonic() + timeout
        last: JobStatus | None = None
        with FinishWatch(self.settings, jid) as watch:
            while True:
                try:
                    last = self.status(jid)
                    if last.finished:
                        return last
                except NotFoundError:
                    last = None
                left = deadline - time.monotonic()
                if left <= 0:
                    progress = (
                        f"{last.done}/{last.expected} items, {last.status}" if last else "no row"
                    )
                    raise TimeoutError(f"job {job_id} not finished after {timeout:g}s ({progress})")
                watch.wait(min(left, RECHECK_S) if watch.live else min(poll_interval, left))


#: How often a waiter woken by events re-reads SQL anyway (a lost event costs at most this).
RECHECK_S = 2.0


class FinishWatch:
    """A subscription to one job's final-event channel (textlstm.wire.events.finished_channel).

    `live` is False when Redis could not be reached (then `wait` just sleeps: the caller polls).
    Entering waits for Redis to confirm the subscription, so a caller that reads SQL after
    entering cannot miss an event published in between.
    """

    def __init__(self, settings: Settings, job_id: uuid.UUID) -> None:
        self.channel = finished_channel(settings.queue, job_id)
        self.settings = settings
        self._pubsub: Any = None
        self.events = 0

    @property
    def live(self) -> bool:
        return self._pubsub is not None

    def __enter__(self) -> FinishWatch:
        try:
            client = broker_client(self.settings)
            pubsub = client.pubsub()
            pubsub.subscribe(self.channel)
            confirm = pubsub.get_message(timeout=5.0)  # the subscribe confirmation
            if confirm is None or confirm.get("type") != "subscribe":
                raise ConnectionError("no subscription confirmation")
            self._pubsub = pubsub
        except Exception:  # noqa: BLE001 - Redis unavailable: the caller polls SQL instead
            self._pubsub = None
        return self

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, or until the job's event arrives (True)."""
        if self._pubsub is None:
            time.sleep(max(0.0, seconds))
            return False
        end = time.monotonic() + seconds
        try:
            while (left := end - time.monotonic()) > 0:
                msg = self._pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
                if msg is not None and msg.get("type") == "message":
                    self.events += 1
                    return True
        except Exception:  # noqa: BLE001 - lost Redis: fall back to polling
            self.close()
        return False

    def close(self) -> None:
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:  # noqa: BLE001, S110 - closing a broken connection
                pass
            self._pubsub = None

    def __exit__(self, *exc: object) -> None:
        self.close()


def submit(
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
    """Submit a job with the process settings (see Client.submit)."""
    return Client().submit(
        texts,
        model=model,
        metadata=metadata,
        job_id=job_id,
        priority=priority,
        deadline=deadline,
        expires=expires,
        webhook=webhook,
    )


def status(job_id: str | uuid.UUID) -> JobStatus:
    return Client().status(job_id)


def cancel(job_id: str | uuid.UUID) -> CancelResult:
    return Client().cancel(job_id)


def results(job_id: str | uuid.UUID) -> list[ItemResult]:
    return Client().results(job_id)


def wait(
    job_id: str | uuid.UUID, *, timeout: float = 60.0, poll_interval: float = 0.5
) -> JobStatus:
    return Client().wait(job_id, timeout=timeout, poll_interval=poll_interval)


def republish(settings: Settings, body: Mapping[str, Any]) -> ClassifyMessage:
    """Validate a version 1 message body again and send it to its priority's queue (the
    dead-letter requeue of one envelope part). Raises ValidationError if it is still bad."""
    msg = parse_message(body, limits=Limits.from_settings(settings))
    queue = queue_for(settings.queue, msg.priority)
    publish_messages(settings, [msg], gate=_gate(settings, queue, None, None))
    return msg
