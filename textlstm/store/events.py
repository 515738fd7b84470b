"""Final events and webhook deliveries: the SQL that makes "exactly one final event per job"
true, and the delivery record a worker's sender claims, updates and retries.

`record_finished` runs in the transaction that made its jobs final (the prediction save paths
call it; so can any other path that ends a job, e.g. a cancel): it inserts one `job_events` row
per job, insert-or-ignore on the job id, and returns only the rows it inserted. Two workers that
store a job's last items at once are serialised by the job row's lock; whichever commits the
final status inserts the event, and a later writer (or a retry of the same batch) inserts
nothing. So the caller publishes exactly the events it returns, after its commit.

Nothing here commits: the caller owns the transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, func, select, update
from sqlalchemy.orm import Session

from textlstm.store.bulk_insert import insert_ignore
from textlstm.store.models import FINISHED_STATUSES, Job, JobEvent, WebhookDelivery, utcnow


@dataclass(frozen=True)
class Finished:
    """A job that reached a final status in this transaction (its one final event)."""

    job_id: uuid.UUID
    status: str
    #: A webhook delivery was recorded for it (`pending`).
    webhook: bool = False


def record_finished(
    *, session: Session, jobs: Iterable[tuple[uuid.UUID, str, str | None]]
) -> list[Finished]:
    """Record the final event of each (job id, status, webhook URL) whose status is final, and
    a pending webhook delivery for those with a URL; return the events this call inserted."""
    now = utcnow()
    final = {jid: (status, url) for jid, status, url in jobs if status in FINISHED_STATUSES}
    if not final:
        return []
    order = sorted(final, key=lambda u: u.int)  # one lock order for every writer
    events: Table = JobEvent.__table__  # type: ignore[assignment]
    rows = [{"job_id": j, "status": final[j][0], "created_at": now} for j in order]
    won = {jid for (jid,) in insert_ignore(session, events, rows, ["job_id"], ["job_id"]).all()}
    hooks = [j for j in order if j in won and final[j][1] is not None]
    if hooks:
        deliveries: Table = WebhookDelivery.__table__  # type: ignore[assignment]
        insert_ignore(
            session,
            deliveries,
            [
                {
                    "job_id": j,
                    "url": final[j][1],
                    "state": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
                for j in hooks
            ],  # fmt: skip
            ["job_id"],
            [],
        )
    return [Finished(j, final[j][0], final[j][1] is not None) for j in order if j in won]


def record_if_final(*, session: Session, job_ids: Sequence[uuid.UUID]) -> list[Finished]:
    """`record_finished` for jobs read back from their rows: for a path that set a final status
    by other SQL (a cancel, a recovery), in the same transaction."""
    if not job_ids:
        return []
    rows = session.execute(
        select(Job.id, Job.status, Job.webhook_url).where(
            Job.id.in_(job_ids), Job.status.in_(FINISHED_STATUSES)
        )
    ).all()
    return record_finished(session=session, jobs=[(r[0], r[1], r[2]) for r in rows])


def job_event(*, session: Session, job_id: uuid.UUID) -> JobEvent | None:
    return session.get(JobEvent, job_id, populate_existing=True)


@dataclass(frozen=True)
class Claimed:
    """A delivery a sender took: its attempt number (1 for the first) and what to send."""

    job_id: uuid.UUID
    url: str
    attempt: int
    payload: dict[str, Any]


def claim_due(*, session: Session, now: datetime, lease: timedelta, limit: int) -> list[Claimed]:
    """Take up to `limit` pending deliveries whose next attempt is due: count the attempt and
    push their next attempt `lease` ahead, so no other sender takes them meanwhile (and a
    sender that dies mid-attempt leaves them to be retried after the lease). On PostgreSQL
    rows another sender is claiming are skipped (SKIP LOCKED); SQLite has one writer."""
    table: Table = WebhookDelivery.__table__  # type: ignore[assignment]
    due = (
        select(table.c.job_id)
        .where(table.c.state == "pending", table.c.next_attempt_at <= now)
        .order_by(table.c.next_attempt_at)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    rows = session.execute(
        update(table)
        .where(table.c.job_id.in_(due.scalar_subquery()))
        .values(attempts=table.c.attempts + 1, next_attempt_at=now + lease, updated_at=now)
        .returning(table.c.job_id, table.c.url, table.c.attempts)
    ).all()
    if not rows:
        return []
    jobs = {j.id: j for j in session.scalars(select(Job).where(Job.id.in_([r[0] for r in rows])))}
    return [Claimed(r[0], r[1], r[2], _payload(jobs[r[0]])) for r in rows if r[0] in jobs]


def _payload(job: Job) -> dict[str, Any]:
    """The event a webhook receives (and the pub/sub message carries the same keys)."""
    return {
        "type": "job.finished",
        "job_id": str(job.id),
        "status": job.status,
        "model_ref": job.model_ref,
        "expected": job.expected_count,
        "ok": job.ok_count,
        "errors": job.error_count,
        "expired": job.expired_count,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def record_attempt(
    *,
    session: Session,
    job_id: uuid.UUID,
    now: datetime,
    status_code: int | None,
    error: str | None,
    delivered: bool,
    retry_at: datetime | None,
) -> None:
    """Store an attempt's outcome: delivered; or failed for good (`retry_at` None); or to be
    retried at `retry_at`. `error` is a one-line reason, never a header or the secret."""
    state = "delivered" if delivered else "pending" if retry_at is not None else "failed"
    table: Table = WebhookDelivery.__table__  # type: ignore[assignment]
    session.execute(
        update(table)
        .where(table.c.job_id == job_id)
        .values(
            state=state,
            last_status_code=status_code,
            last_error=None if error is None else error[:1000],
            updated_at=now,
            next_attempt_at=retry_at if retry_at is not None else table.c.next_attempt_at,
            delivered_at=now if delivered else None,
        )
    )


def get_delivery(*, session: Session, job_id: uuid.UUID) -> WebhookDelivery | None:
    return session.get(WebhookDelivery, job_id, populate_existing=True)


def delivery_counts(*, session: Session) -> dict[str, int]:
    """Webhook deliveries in each state (every state present, zeros included)."""
    table: Table = WebhookDelivery.__table__  # type: ignore[assignment]
    rows = session.execute(select(table.c.state, func.count()).group_by(table.c.state)).all()
    counts = {"pending": 0, "delivered": 0, "failed": 0}
    counts.update({state: int(n) for state, n in rows})
    return counts


def recent_failures(*, session: Session, limit: int = 5) -> list[WebhookDelivery]:
    """The latest deliveries that failed for good (newest first)."""
    return list(
        session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.state == "failed")
            .order_by(WebhookDelivery.updated_at.desc())
            .limit(limit)
        )
    )
