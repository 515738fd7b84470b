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

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from textlstm.errors import NotFoundError, ValidationError
from textlstm.store.bulk_insert import dialect_insert, insert_ignore
from textlstm.store.models import JOB_STATUSES, Job, Prediction, utcnow


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
    created = session.execute(stmt).first() is not None  # RETURNING is empty when it existed
    job = get_job(session=session, job_id=job_id)
    if job.expected_count != expected or job.model_ref != model_ref:
        raise ValidationError(
            reused_job_id(job_id, job.expected_count, job.model_ref, expected, model_ref)
        )
    return job, created


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
