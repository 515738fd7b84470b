"""Job rows: create them (one or thousands at once), read them, count them, find stuck ones.

A job's counters and status are advanced by the prediction save paths (store/predictions.py),
in the same transaction as its rows. Nothing here commits: the caller owns the transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, Table, Uuid, bindparam, func, literal, select, update
from sqlalchemy.orm import Session

from textlstm.errors import NotFoundError, ValidationError
from textlstm.store.bulk_insert import dialect_insert, insert_ignore
from textlstm.store.events import Finished, claim_final
from textlstm.store.models import (
    FINISHED_STATUSES,
    JOB_STATUSES,
    Job,
    Prediction,
    UTCDateTime,
    utcnow,
)


def reused_job_id(
    job_id: uuid.UUID, had: int, had_model: str, expected: int, model_ref: str, this: str = "one"
) -> str:
    """Why items for `job_id` are refused: the id's row is another job (total or model differ).
    Shared with the save paths, which refuse a message's items with the same words."""
    return (
        f"job id {job_id} is already used by a job of {had} items for model {had_model!r} "
        f"(this {this}: {expected} items for {model_ref!r})"
    )


def ensure_job(
    *,
    session: Session,
    job_id: uuid.UUID,
    model_ref: str,
    expected: int,
    metadata: Mapping[str, Any] | None = None,
    submitted_at: datetime | None = None,
    webhook_url: str | None = None,
) -> tuple[Job, bool]:
    """Create the job row as `queued` unless it exists; return (job, created).

    Race-free (insert-or-ignore), so the producer and any number of workers may all call it. An
    existing job must agree on item count and model reference: a reused job id is an error.
    """
    created = _insert_job(session, job_id, model_ref, expected, metadata, submitted_at,
                          webhook_url)  # fmt: skip
    return _agreeing_job(session, job_id, model_ref, expected), created


def record_job(
    *,
    session: Session,
    job_id: uuid.UUID,
    model_ref: str,
    expected: int,
    metadata: Mapping[str, Any] | None = None,
    submitted_at: datetime | None = None,
    webhook_url: str | None = None,
) -> bool:
    """`ensure_job` for a producer, which needs no row back: True when the row was created.

    A row this call inserted agrees by construction, so only an existing one is read back and
    checked (a reused job id is the same error): the common case is one statement, not an
    INSERT and an ORM load of the row (docs/gateway.md, "Measured").
    """
    created = _insert_job(session, job_id, model_ref, expected, metadata, submitted_at,
                          webhook_url)  # fmt: skip
    if not created:
        _agreeing_job(session, job_id, model_ref, expected)
    return created


def _insert_job(
    session: Session,
    job_id: uuid.UUID,
    model_ref: str,
    expected: int,
    metadata: Mapping[str, Any] | None,
    submitted_at: datetime | None,
    webhook_url: str | None,
) -> bool:
    """INSERT the `queued` row unless the id exists; True when this call created it."""
    if expected < 1:
        raise ValidationError("a job needs at least one item")
    stmt = (
        dialect_insert(session, Job.__table__)  # type: ignore[arg-type]
        .values(
            id=job_id,
            model_ref=model_ref,
            status="queued",
            expected_count=expected,
            ok_count=0,
            error_count=0,
            submitted_at=submitted_at or utcnow(),
            metadata=dict(metadata) if metadata is not None else None,
            webhook_url=webhook_url,
        )
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(Job.__table__.c.id)
    )
    return session.execute(stmt).first() is not None  # RETURNING is empty when it existed


def _agreeing_job(session: Session, job_id: uuid.UUID, model_ref: str, expected: int) -> Job:
    """The stored job, which must have `expected` items and `model_ref` (else ValidationError)."""
    job = get_job(session=session, job_id=job_id)
    if job.expected_count != expected or job.model_ref != model_ref:
        raise ValidationError(
            reused_job_id(job_id, job.expected_count, job.model_ref, expected, model_ref)
        )
    return job


def job_row(
    job_id: uuid.UUID,
    model_ref: str,
    expected: int,
    metadata: Mapping[str, Any] | None,
    submitted_at: datetime,
    webhook_url: str | None = None,
) -> dict[str, Any]:
    """A new `queued` job row, as the bulk inserts write it."""
    return {
        "id": job_id,
        "model_ref": model_ref,
        "status": "queued",
        "expected_count": expected,
        "ok_count": 0,
        "error_count": 0,
        "submitted_at": submitted_at,
        "metadata": dict(metadata) if metadata is not None else None,
        "webhook_url": webhook_url,
    }


def add_jobs(*, session: Session, jobs: Sequence[Mapping[str, Any]]) -> int:
    """Create many `queued` job rows in one statement (insert-or-ignore); return how many
    were new. Each mapping has job_id, model_ref, expected, metadata and submitted_at.

    The batching producer's path: thousands of one-text jobs a second cannot afford a round
    trip each. Unlike ensure_job it does not read back an existing row to check that it
    agrees; the worker's ensure_job does when it receives the job.
    """
    if not jobs:
        return 0
    now = utcnow()
    rows = [
        job_row(j["job_id"], j["model_ref"], j["expected"], j.get("metadata"),
                j.get("submitted_at") or now, j.get("webhook_url"))
        for j in jobs
    ]  # fmt: skip
    rows.sort(key=lambda r: r["id"].int)  # one lock order for every writer (.int: C compares)
    table: Table = Job.__table__  # type: ignore[assignment]
    return insert_ignore(session, table, rows, ["id"], []).rowcount  # no RETURNING


def get_job(*, session: Session, job_id: uuid.UUID) -> Job:
    """The job, freshly read (counters change under our feet); NotFoundError if unknown."""
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise NotFoundError(f"job {job_id} not found")
    return job


def list_jobs(*, session: Session, status: str | None = None, limit: int = 50) -> list[Job]:
    """Most recently submitted first (served by ix_jobs_status_submitted_at / _submitted_at)."""
    stmt = select(Job).order_by(Job.submitted_at.desc(), Job.id).limit(limit)
    if status is not None:
        if status not in JOB_STATUSES:
            raise ValidationError(
                f"unknown job status {status!r}; one of {', '.join(JOB_STATUSES)}"
            )
        stmt = stmt.where(Job.status == status)
    return list(session.scalars(stmt))


def job_counts(*, session: Session) -> dict[str, int]:
    """Number of jobs in each status (every status present, zeros included)."""
    rows = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
    counts = dict.fromkeys(JOB_STATUSES, 0)
    counts.update({status: int(n) for status, n in rows})
    return counts


def oldest_in_flight(*, session: Session) -> Job | None:
    """The earliest-submitted job still queued or running (ix_jobs_status_submitted_at)."""
    return session.scalar(
        select(Job)
        .where(Job.status.in_(("queued", "running")))
        .order_by(Job.submitted_at, Job.id)
        .limit(1)
    )


@dataclass(frozen=True)
class StuckJob:
    job_id: uuid.UUID
    status: str
    done: int
    expected: int
    last_activity: datetime


def stuck_jobs(*, session: Session, older_than: timedelta, now: datetime) -> list[StuckJob]:
    """Jobs still `queued` or `running` whose last stored item (or submission, if none) is
    older than `older_than`: no progress for that long."""
    cutoff = now - older_than
    last_row = (
        select(Prediction.job_id, func.max(Prediction.created_at).label("last"))
        .group_by(Prediction.job_id)
        .subquery()
    )
    rows = session.execute(
        select(Job, last_row.c.last)
        .outerjoin(last_row, last_row.c.job_id == Job.id)
        .where(Job.status.in_(("queued", "running")), Job.submitted_at < cutoff)
        .order_by(Job.submitted_at)
    ).all()
    out = []
    for job, last in rows:
        activity = last or job.submitted_at
        if activity.tzinfo is None:  # SQLite hands back naive values from an aggregate
            activity = activity.replace(tzinfo=UTC)
        if activity < cutoff:
            out.append(StuckJob(job.id, job.status, job.done_count, job.expected_count, activity))
    return out


def unfinished_jobs(*, session: Session) -> list[uuid.UUID]:
    """Ids of jobs that are not `done` or whose counters do not add up to their total: what a
    soak run (bench/soak.py) reports as bad once every item should be in."""
    return list(
        session.scalars(
            select(Job.id).where(
                (Job.status != "done") | (Job.ok_count + Job.error_count != Job.expected_count)
            )
        )
    )


@dataclass(frozen=True)
class CancelOutcome:
    """What `cancel_job` did. `cancelled` is the number of items it stored as `cancelled`
    (0 when the job was already final); `status` is the job's status afterwards and
    `previous` its status before."""

    job_id: uuid.UUID
    previous: str
    status: str
    cancelled: int
    ok: int
    expected: int
    #: The job's final event when this cancel ended it (publish it after the commit).
    finished: tuple[Finished, ...] = ()

    @property
    def changed(self) -> bool:
        """True when this call cancelled the job (False: it was already final)."""
        return self.previous != self.status


def cancel_job(
    *, session: Session, job_id: uuid.UUID, now: datetime | None = None
) -> CancelOutcome:
    """Cancel a job in SQL: every item that has no row yet gets a `cancelled` row (counted in
    error_count and cancelled_count) and the job ends `cancelled`, in the caller's transaction.
    Rows already stored stay. A job already final is left as it is (idempotent: a second
    cancel changes nothing); NotFoundError if the job is unknown.

    The missing rows are one INSERT … SELECT over the item indexes (a recursive CTE, on both
    databases) with ON CONFLICT DO NOTHING, in ascending index order like every other writer:
    a worker storing items of the job at the same moment either commits first (its rows stay
    and are counted by it) or finds the `cancelled` row and inserts nothing, so each item is
    stored once and the counters add up. Then one UPDATE, only while the job is queued or
    running, sets the status: on PostgreSQL it re-reads a row a worker changed meanwhile.
    After the commit no item of the job can be stored again, so the job's final status is
    reached exactly once, whether or not a worker ever sees its remaining messages.
    """
    row = session.execute(
        select(Job.status, Job.expected_count, Job.ok_count).where(Job.id == job_id)
    ).first()
    if row is None:
        raise NotFoundError(f"job {job_id} not found")
    if row.status in FINISHED_STATUSES:
        return CancelOutcome(job_id, row.status, row.status, 0, row.ok_count, row.expected_count)
    now = now or utcnow()
    preds: Table = Prediction.__table__  # type: ignore[assignment]
    seq = select(literal(0, Integer).label("i")).cte("item_indexes", recursive=True)
    seq = seq.union_all(select(seq.c.i + 1).where(seq.c.i < row.expected_count - 1))
    source = (
        select(
            bindparam("c_job", job_id, type_=Uuid),
            seq.c.i,
            literal("cancelled"),
            literal(f"cancelled at {now.isoformat(timespec='seconds')}"),
            bindparam("c_now", now, type_=UTCDateTime),
        )
        .where(seq.c.i >= 0)  # SQLite: an upsert's SELECT needs a WHERE (parsing ambiguity)
        .order_by(seq.c.i)
    )
    insert = (
        dialect_insert(session, preds)
        .from_select(["job_id", "item_index", "status", "error", "created_at"], source)
        .on_conflict_do_nothing(index_elements=["job_id", "item_index"])
    )
    session.execute(insert)
    # Every index now has a row, and every other writer's rows are committed with their
    # counts, so the items not counted yet are exactly the ones just stored as cancelled (the
    # INSERT's rowcount is not reported through a WITH on SQLite). SET reads the old values.
    jobs: Table = Job.__table__  # type: ignore[assignment]
    uncounted = jobs.c.expected_count - jobs.c.ok_count - jobs.c.error_count
    done = session.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status.in_(("queued", "running")))
        .values(
            status="cancelled",
            error_count=jobs.c.expected_count - jobs.c.ok_count,
            cancelled_count=jobs.c.cancelled_count + uncounted,
            finished_at=func.coalesce(jobs.c.finished_at, now),
        )
        .returning(jobs.c.cancelled_count)
    ).first()
    job = get_job(session=session, job_id=job_id)  # fresh: the UPDATE changed it in SQL
    if done is None:  # the last items were stored meanwhile: it ended on its own
        return CancelOutcome(job_id, row.status, job.status, 0, job.ok_count, job.expected_count)
    added = done.cancelled_count  # 0 before: only a cancel writes it, once
    # The job's one final event (and its webhook delivery record), claimed in this transaction.
    finished = tuple(claim_final(session=session, job_ids=[job_id]))
    return CancelOutcome(
        job_id, row.status, "cancelled", added, job.ok_count, job.expected_count, finished
    )


#: At most this many ids per read of the recently cancelled jobs: the read runs twice a second
#: in every amqp:// worker, so it is bounded whatever an operator cancels at once. The newest
#: are read first; an older cancel left out is still enforced by SQL (its items have rows).
RECENTLY_CANCELLED_LIMIT = 10_000


def recently_cancelled_job_ids(
    *, session: Session, since: datetime, limit: int = RECENTLY_CANCELLED_LIMIT
) -> list[str]:
    """The ids of the jobs cancelled at or after `since`, newest first, at most `limit`.

    Why: on amqp:// there is no Redis set of cancelled jobs; the workers learn of a cancel from
    SQL instead (textlstm.serving.cancel.CancelledJobs calls this every
    `worker_cancel_refresh_ms`). cancel_job sets finished_at when it ends a job `cancelled`, so
    (status, finished_at) finds them through ix_jobs_status_finished_at without a scan."""
    rows = session.execute(
        select(Job.id)
        .where(Job.status == "cancelled", Job.finished_at >= since)
        .order_by(Job.finished_at.desc())
        .limit(limit)
    ).scalars()
    return [str(i) for i in rows]
