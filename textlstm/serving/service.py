"""The one use case: classify a micro-batch and store its rows in one transaction.

`classify_batch` is what the Celery adapter calls; it is testable with a real database and a
real (tiny) model and no worker. Failures are contained per item: a text the model cannot
handle becomes an `error` row, an unknown or unloadable model turns every item of the batch
into an `error` row carrying the reason (so the job ends `failed` and says why), and the rest of
the batch is stored as usual. Database outages are retried (see `retry.py`); nothing here acks.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from textlstm.messages import ClassifyMessage
from textlstm.serving.batcher import MicroBatch
from textlstm.serving.models import LoadedModel, ModelCache, ModelUnavailable
from textlstm.serving.rejects import Salvage
from textlstm.serving.retry import RetryPolicy, retrying
from textlstm.store import repository as repo
from textlstm.store.repository import PredictionRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchReport:
    """What one micro-batch did; the worker logs it (the e2e tests read `items` from the log)."""

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


def _records(
    batch: MicroBatch, outcomes: Sequence[ItemOutcome], latency_ms: Sequence[float]
) -> dict[uuid.UUID, tuple[ClassifyMessage, list[PredictionRecord]]]:
    """Group records by job, one per item index (a redelivered message may repeat one)."""
    by_job: dict[uuid.UUID, tuple[ClassifyMessage, dict[int, PredictionRecord]]] = {}
    for (entry, item), out, lat in zip(batch.pairs(), outcomes, latency_ms, strict=True):
        msg = entry.message
        _, recs = by_job.setdefault(msg.job_id, (msg, {}))
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
    return {jid: (msg, list(recs.values())) for jid, (msg, recs) in by_job.items()}


def _store(
    session: Session,
    jobs: dict[uuid.UUID, tuple[ClassifyMessage, list[PredictionRecord]]],
    model_version_id: int | None,
) -> tuple[int, int, list[str]]:
    outcome = repo.save_batch(
        session=session,
        jobs={
            jid: repo.JobItems(
                model_ref=msg.model,
                expected=msg.total,
                records=records,
                metadata=msg.metadata,
                submitted_at=msg.submitted_at,
            )
            for jid, (msg, records) in jobs.items()
        },
        model_version_id=model_version_id,
    )
    for jid, why in outcome.skipped.items():
        # The job id is taken by a different job (other total or model): nothing was
        # written for it, and its items can never be stored under this id.
        log.error("job %s: items not stored: %s", jid, why)
    return outcome.inserted, outcome.duplicates, [str(j) for j in outcome.skipped]


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

    def write() -> tuple[int, int, list[str]]:
        with session_factory.begin() as session:
            return _store(session, jobs, version_id)

    started = time.perf_counter()
    (inserted, duplicates, skipped), attempts = retrying(
        write, policy=retry, what=f"store {len(texts)} item(s)"
    )
    errors = sum(1 for o in outcomes if o.error)
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
        inserted=inserted,
        duplicates=duplicates,
        forward_ms=forward_ms,
        db_ms=(time.perf_counter() - started) * 1000,
        db_attempts=attempts,
        skipped_jobs=tuple(skipped),
        expired=expired,
        queue_wait_s=waits,
        tokenize_ms=timings.get("tokenize_s", 0.0) * 1000,
    )


def record_rejection(
    found: Salvage, reason: str, *, session_factory: sessionmaker[Session], retry: RetryPolicy
) -> int:
    """Store an `error` row for each readable item of a rejected message; return how many.

    Only when its job exists or can be created (job id, total and model readable); otherwise
    the rejection is only logged by the caller.
    """
    if found.job_id is None or not found.items:
        return 0
    job_id = found.job_id
    error = f"message rejected: {reason}"[:2000]

    def write() -> int:
        with session_factory.begin() as session:
            from textlstm.errors import NotFoundError

            try:
                expected = repo.get_job(session=session, job_id=job_id).expected_count
            except NotFoundError:
                if found.total is None or found.model is None:
                    return 0
                repo.ensure_job(
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
            return repo.save_predictions(session=session, job_id=job_id, records=records).inserted

    inserted, _ = retrying(write, policy=retry, what=f"record rejection on job {job_id}")
    return inserted
