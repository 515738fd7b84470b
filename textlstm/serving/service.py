"""The one use case: classify a micro-batch and store its rows in one transaction.

`classify_batch` is what the Celery adapter calls; it is testable with a real database and a
real (tiny) model and no worker. Failures are contained per item: a text the model cannot
handle becomes an `error` row, an unknown or unloadable model turns every item of the batch
into an `error` row carrying the reason (so the job ends `failed` and says why), and the rest of
the batch is stored as usual. Database outages are retried (see `retry.py`); nothing here acks.

Storage failures are contained per job too (batch isolation): messages of one job id that
disagree on its total or model are kept apart and only the one that matches the job is stored,
and when the one-transaction write fails for a reason that is not an outage (a value the
database refuses, a conflict), the write is re-run split by job, each part in a SAVEPOINT, so
only the jobs that fail on their own lose their rows (they get `error` rows with the reason
where their job row can be made) and the rest is committed in the same call.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from textlstm.errors import ValidationError
from textlstm.serving.microbatch import MicroBatch
from textlstm.serving.models import LoadedModel, ModelCache, ModelUnavailable
from textlstm.serving.retry import RETRYABLE, RetryPolicy, ShutdownRequested, retrying
from textlstm.store.events import Finished
from textlstm.store.jobs import ensure_job, get_job
from textlstm.store.predictions import (
    BatchOutcome,
    JobItems,
    PredictionRecord,
    Unstored,
    save_batch,
    save_predictions,
)
from textlstm.wire.messages import ClassifyMessage
from textlstm.wire.salvage import Salvage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchReport:
    """What one micro-batch did; the worker logs it for people and, with a stats folder set,
    writes it as a `textlstm.serving.stages.BatchStats` record for programs."""

    model_ref: str
    model: str | None  # exact name@version, None when the model was unavailable
    items: int
    messages: int
    tokens: int
    ok: int
    errors: int
    inserted: int
    duplicates: int
    forward_ms: float  # the whole model step: tokenize_ms + the network
    db_ms: float
    db_attempts: int
    skipped_jobs: tuple[str, ...] = ()
    expired: int = 0
    #: Seconds from submission to the start of this batch, per item that was submitted with a
    #: timestamp (the queue-wait metric).
    queue_wait_s: tuple[float, ...] = ()
    tokenize_ms: float = 0.0
    #: Every (job id, total, model) whose items in this batch got no row at all, with why: a
    #: message that disagrees with its job on total or model, a reused job id (also in
    #: `skipped_jobs`), a job the database refused even as error rows. Those messages can
    #: never be stored as sent (dead-letter them); see `unstored_reason`.
    unstored: tuple[Unstored, ...] = ()
    #: The jobs this batch's transaction made final: each one's one final event, to publish
    #: after the commit (textlstm/serving/notify.py).
    finished: tuple[Finished, ...] = ()

    def unstored_reason(self, message: ClassifyMessage) -> str | None:
        """Why this batch stored no row for `message`'s items, or None if it stored them."""
        key = (message.job_id, message.total, message.model)
        for u in self.unstored:
            if (u.job_id, u.expected, u.model_ref) == key:
                return u.reason
        return None


@dataclass(frozen=True)
class ItemOutcome:
    """A prediction or an error for one item (pure data from the model step)."""

    label: str | None = None
    score: float | None = None
    probabilities: dict[str, float] | None = None
    error: str | None = None
    expired: bool = False


def predict_isolated(
    classifier: Any,
    texts: Sequence[str],
    *,
    batch_size: int,
    max_tokens: int | None,
    timings: dict[str, float] | None = None,
) -> list[ItemOutcome]:
    """`Classifier.predict` on the whole batch; if it raises, bisect so that only the items
    that fail on their own become errors (also what an out-of-memory batch needs)."""
    try:
        preds = classifier.predict(
            list(texts), batch_size=batch_size, max_tokens=max_tokens, timings=timings
        )
    except Exception as exc:  # noqa: BLE001 - contained per item below
        if len(texts) == 1:
            log.warning("item failed in the model: %s", exc, exc_info=True)
            return [ItemOutcome(error=f"model failed on this text: {type(exc).__name__}: {exc}")]
        mid = len(texts) // 2
        half = {"batch_size": batch_size, "max_tokens": max_tokens, "timings": timings}
        return predict_isolated(classifier, texts[:mid], **half) + predict_isolated(
            classifier, texts[mid:], **half
        )
    return [
        ItemOutcome(error=p.error)
        if p.label is None
        else ItemOutcome(p.label, p.score, dict(p.probabilities))
        for p in preds
    ]


def expired_reason(deadline: datetime, now: datetime) -> str:
    late = (now - deadline).total_seconds()
    return f"expired: not started before the deadline {deadline.isoformat()} ({late:.1f}s late)"


def _outcomes(
    batch: MicroBatch,
    now: datetime,
    predict: Callable[[list[str]], list[ItemOutcome]],
) -> list[ItemOutcome]:
    """Outcomes in batch order: items whose deadline passed before `now` (the start of the
    batch) become `expired` outcomes without touching the model; the rest are predicted."""
    pairs = list(batch.pairs())
    outcomes: list[ItemOutcome] = []
    live: list[int] = []
    for i, (entry, _) in enumerate(pairs):
        deadline = entry.message.deadline
        if deadline is not None and entry.message.expired(now):
            outcomes.append(ItemOutcome(error=expired_reason(deadline, now), expired=True))
        else:
            outcomes.append(ItemOutcome())  # placeholder, replaced by the prediction below
            live.append(i)
    if live:
        predicted = predict([pairs[i][1].text for i in live])
        for i, out in zip(live, predicted, strict=True):
            outcomes[i] = out
    return outcomes


#: A message of a job and its records by item index.
_Group = tuple[ClassifyMessage, dict[int, PredictionRecord]]


def _records(
    batch: MicroBatch, outcomes: Sequence[ItemOutcome], latency_ms: Sequence[float]
) -> dict[uuid.UUID, JobItems]:
    """Group records by job, one per item index (a redelivered message may repeat one).

    A message whose job id an earlier message of the batch used with another total or model
    is a rival (JobItems.rivals): its records are kept apart, not mixed into a job they do not
    fit. The check is one identity test per item while a job's messages agree.
    """
    by_job: dict[uuid.UUID, _Group] = {}
    rivals: dict[tuple[uuid.UUID, int, str], _Group] = {}
    for (entry, item), out, lat in zip(batch.pairs(), outcomes, latency_ms, strict=True):
        msg = entry.message
        first, recs = by_job.setdefault(msg.job_id, (msg, {}))
        if msg is not first and (msg.total != first.total or msg.model != first.model):
            _, recs = rivals.setdefault((msg.job_id, msg.total, msg.model), (msg, {}))
        recs.setdefault(
            item.index,
            PredictionRecord(
                item_index=item.index,
                status="expired" if out.expired else "error" if out.error else "ok",
                label=out.label,
                score=out.score,
                probabilities=out.probabilities,
                external_id=item.id,
                error=out.error,
                latency_ms=round(lat, 3),
            ),
        )
    jobs = {jid: _job_items(msg, recs) for jid, (msg, recs) in by_job.items()}
    for (jid, _, _), (msg, recs) in rivals.items():
        jobs[jid] = replace(jobs[jid], rivals=(*jobs[jid].rivals, _job_items(msg, recs)))
    return jobs


def _job_items(msg: ClassifyMessage, records: Mapping[int, PredictionRecord]) -> JobItems:
    return JobItems(
        model_ref=msg.model,
        expected=msg.total,
        records=list(records.values()),
        metadata=msg.metadata,
        submitted_at=msg.submitted_at,
        webhook_url=msg.webhook,
    )


def _variants(jid: uuid.UUID, part: JobItems) -> list[tuple[uuid.UUID, int, str]]:
    return [(jid, v.expected, v.model_ref) for v in (part, *part.rivals)]


@dataclass
class _Stored:
    """What the write stored; `lost` holds the (job id, total, model) whose items were not
    stored as predicted (error rows instead, or no row)."""

    inserted: int = 0
    duplicates: int = 0
    skipped: list[str] = field(default_factory=list)
    unstored: list[Unstored] = field(default_factory=list)
    lost: set[tuple[uuid.UUID, int, str]] = field(default_factory=set)
    finished: list[Finished] = field(default_factory=list)

    def add(self, outcome: BatchOutcome) -> None:
        self.inserted += outcome.inserted
        self.duplicates += outcome.duplicates
        self.skipped += [str(j) for j in outcome.skipped]
        self.unstored += outcome.refused
        self.lost |= {(u.job_id, u.expected, u.model_ref) for u in outcome.refused}
        self.finished += outcome.finished


def storage_reason(exc: BaseException) -> str:
    """One line a user can act on: the database's (or driver's) own message where there is
    one, e.g. `could not store: value too long for type character varying(100)`."""
    orig = getattr(exc, "orig", None)
    if isinstance(exc, DBAPIError) and orig is not None:
        text = str(orig)  # the database's message, without SQLAlchemy's SQL and parameters
    elif isinstance(exc, ValidationError):
        text = str(exc)
    else:  # a Python error, bare or wrapped by SQLAlchemy (StatementError.orig)
        cause = orig if isinstance(orig, BaseException) else exc
        text = f"{type(cause).__name__}: {cause}"
    lines = text.strip().splitlines()
    return f"could not store: {lines[0] if lines else type(exc).__name__}"[:500]


def _as_errors(part: JobItems, reason: str) -> JobItems:
    """The same job with every item an `error` row carrying `reason` (rivals too)."""
    return replace(
        part,
        records=[
            PredictionRecord(r.item_index, "error", external_id=r.external_id, error=reason)
            for r in part.records
        ],
        rivals=tuple(_as_errors(r, reason) for r in part.rivals),
    )


class _Isolation:
    """Store a micro-batch whose one-transaction write failed, split by job.

    The jobs are bisected, each half in its own SAVEPOINT of one transaction, so the k jobs
    that fail on their own are found in O(k log n) attempts and everything else is stored.
    A job that fails alone gets `error` rows with the reason, again in a savepoint, as soon as
    it is found: jobs are visited in ascending id order, the lock order of save_batch, so
    concurrent writers still take job locks in one order. Outages (RETRYABLE) and a shutdown
    propagate: the caller retries the whole write.
    """

    def __init__(
        self, session: Session, jobs: Mapping[uuid.UUID, JobItems], version_id: int | None
    ) -> None:
        self.session, self.jobs, self.version_id = session, jobs, version_id
        self.stored = _Stored()
        self.attempts = 0
        self.failed = 0

    def run(self, ids: Sequence[uuid.UUID], failure: Exception | None = None) -> None:
        """Store `ids`; `failure` is their error when already known (then not re-tried)."""
        if failure is None:
            failure = self._attempt({j: self.jobs[j] for j in ids}, self.version_id)
            if failure is None:
                return
        if len(ids) == 1:
            self._fail(ids[0], failure)
            return
        mid = len(ids) // 2
        self.run(ids[:mid])
        self.run(ids[mid:])

    def _attempt(
        self, jobs: Mapping[uuid.UUID, JobItems], version_id: int | None
    ) -> Exception | None:
        """save_batch in a savepoint: None when it was stored, else the error (rolled back)."""
        self.attempts += 1
        try:
            with self.session.begin_nested():
                outcome = save_batch(session=self.session, jobs=jobs, model_version_id=version_id)
        except (*RETRYABLE, ShutdownRequested):
            raise
        except Exception as exc:  # noqa: BLE001 - this part alone is refused; reported
            return exc
        self.stored.add(outcome)
        return None

    def _fail(self, jid: uuid.UUID, failure: Exception) -> None:
        part, reason = self.jobs[jid], storage_reason(failure)
        self.failed += 1
        keys = _variants(jid, part)
        self.stored.lost.update(keys)
        # No model version on error rows: they hold no prediction, and a bad reference must
        # not fail them too.
        if self._attempt({jid: _as_errors(part, reason)}, None) is None:
            log.error("job %s: %d item(s) stored as errors: %s", jid, len(part.records), reason)
            return
        self.stored.unstored += [Unstored(j, reason, n, m) for j, n, m in keys]


def _store(session: Session, jobs: Mapping[uuid.UUID, JobItems], version_id: int | None) -> _Stored:
    """The fast path: every job of the batch in one save_batch (a few statements)."""
    stored = _Stored()
    stored.add(save_batch(session=session, jobs=jobs, model_version_id=version_id))
    return stored


def _write(
    session_factory: sessionmaker[Session],
    jobs: Mapping[uuid.UUID, JobItems],
    version_id: int | None,
) -> _Stored:
    """Store the batch in one transaction; if that fails for a reason that is not an outage,
    isolate the failing jobs in a second transaction (`_Isolation`) and store the rest."""
    try:
        with session_factory.begin() as session:
            return _store(session, jobs, version_id)
    except (*RETRYABLE, ShutdownRequested):
        raise
    except Exception as exc:  # noqa: BLE001 - isolated below; each failing job is reported
        failure = exc
    log.warning(
        "storing %d job(s) in one write failed (%s); isolating the job(s) that cause it",
        len(jobs),
        storage_reason(failure),
    )
    with session_factory.begin() as session:
        isolation = _Isolation(session, jobs, version_id)
        isolation.run(sorted(jobs, key=lambda j: j.int), failure)
    log.warning(
        "isolated %d failing job(s) of %d in %d savepoint attempt(s); the rest is stored",
        isolation.failed,
        len(jobs),
        isolation.attempts,
    )
    return isolation.stored


def classify_batch(
    batch: MicroBatch,
    *,
    models: ModelCache,
    session_factory: sessionmaker[Session],
    retry: RetryPolicy,
    fail_reason: str | None = None,
    forward_batch: int = 128,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> BatchReport:
    """Predict `batch` with the model its reference names now, and store every item once.

    Returns after the commit; raises ShutdownRequested if asked to stop while the database is
    down (nothing is committed then, and the caller must not ack). With `fail_reason`, the
    model is skipped and every item is stored as an error with that reason (last resort after
    an unexpected failure, so the job still finishes). Items whose message's deadline passed
    before the batch started are stored as `expired` and never reach the model.

    A job whose items the database refuses, or a message that disagrees with its job on total
    or model, fails alone (see `_write`): the report's `unstored` names every message shape
    whose items got no row, with the reason, and everything else is committed in this call.

    The model sees the batch in forward passes of at most `forward_batch` texts, sorted by
    length across the whole micro-batch: a micro-batch bigger than the model's best batch
    (one transaction and one round of acks for many messages) still runs at that batch size,
    with less padding than its arrival order would give.
    """
    texts = [item.text for _, item in batch.pairs()]
    start_wall = wall_clock()
    waits = tuple(
        (start_wall - entry.message.submitted_at).total_seconds()
        for entry, _ in batch.pairs()
        if entry.message.submitted_at is not None
    )
    model: LoadedModel | None = None
    forward_s = 0.0
    timings: dict[str, float] = {}

    def predict(live: list[str]) -> list[ItemOutcome]:
        nonlocal model, forward_s
        if fail_reason is not None:
            return [ItemOutcome(error=fail_reason)] * len(live)
        try:
            model, _ = retrying(
                lambda: models.get(batch.model_ref),
                policy=retry,
                what=f"resolve {batch.model_ref}",
            )
        except ModelUnavailable as exc:
            log.error(
                "%d item(s) of model %r stored as errors: %s", len(live), batch.model_ref, exc
            )
            return [ItemOutcome(error=f"model unavailable: {exc}")] * len(live)
        started = time.perf_counter()
        out = predict_isolated(
            model.classifier, live, batch_size=forward_batch, max_tokens=None, timings=timings
        )
        forward_s = time.perf_counter() - started
        return out

    outcomes = _outcomes(batch, start_wall, predict)
    forward_ms = forward_s * 1000
    now = clock()
    latency = [(now - entry.received_at) * 1000 for entry, _ in batch.pairs()]
    jobs = _records(batch, outcomes, latency)
    version_id = model.version_id if model is not None else None
    started = time.perf_counter()
    stored, attempts = retrying(
        lambda: _write(session_factory, jobs, version_id),
        policy=retry,
        what=f"store {len(texts)} item(s)",
    )
    for u in stored.unstored:
        log.error("job %s: items not stored: %s", u.job_id, u.reason)
    errors = _errors(batch, outcomes, stored.lost)
    expired = sum(1 for o in outcomes if o.expired)
    if expired:
        log.warning("%d item(s) stored as expired: their deadline passed before the batch", expired)
    return BatchReport(
        model_ref=batch.model_ref,
        model=model.ref if model is not None else None,
        items=len(texts),
        messages=batch.messages,
        tokens=batch.tokens,
        ok=len(texts) - errors,
        errors=errors,
        inserted=stored.inserted,
        duplicates=stored.duplicates,
        forward_ms=forward_ms,
        db_ms=(time.perf_counter() - started) * 1000,
        db_attempts=attempts,
        skipped_jobs=tuple(stored.skipped),
        expired=expired,
        queue_wait_s=waits,
        tokenize_ms=timings.get("tokenize_s", 0.0) * 1000,
        unstored=tuple(stored.unstored),
        finished=tuple(stored.finished),
    )


def _errors(
    batch: MicroBatch, outcomes: Sequence[ItemOutcome], lost: set[tuple[uuid.UUID, int, str]]
) -> int:
    """Items that did not end as `ok` rows: the model's errors, plus (only when the write
    lost some) the items of jobs stored as errors or not at all."""
    if not lost:
        return sum(1 for o in outcomes if o.error)
    return sum(
        1
        for (entry, _), o in zip(batch.pairs(), outcomes, strict=True)
        if o.error or (entry.message.job_id, entry.message.total, entry.message.model) in lost
    )


def record_rejection(
    found: Salvage,
    reason: str,
    *,
    session_factory: sessionmaker[Session],
    retry: RetryPolicy,
    on_finished: Callable[[Sequence[Finished]], None] | None = None,
) -> int:
    """Store an `error` row for each readable item of a rejected message; return how many.

    Only when its job exists or can be created (job id, total and model readable); otherwise
    the rejection is only logged by the caller. If those rows finish the job, its final event
    is handed to `on_finished` after the commit.
    """
    finished: list[Finished] = []
    if found.job_id is None or not found.items:
        return 0
    job_id = found.job_id
    error = f"message rejected: {reason}"[:2000]

    def write() -> int:
        with session_factory.begin() as session:
            from textlstm.errors import NotFoundError

            try:
                expected = get_job(session=session, job_id=job_id).expected_count
            except NotFoundError:
                if found.total is None or found.model is None:
                    return 0
                ensure_job(
                    session=session, job_id=job_id, model_ref=found.model, expected=found.total
                )
                expected = found.total
            records = [
                PredictionRecord(item_index=i, status="error", external_id=ext, error=error)
                for i, ext in found.items
                if i < expected
            ]
            if not records:
                return 0
            outcome = save_predictions(session=session, job_id=job_id, records=records)
            finished[:] = outcome.finished
            return outcome.inserted

    inserted, _ = retrying(write, policy=retry, what=f"record rejection on job {job_id}")
    if finished and on_finished is not None:
        on_finished(finished)
    return inserted
