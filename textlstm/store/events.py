"""Final events and webhook deliveries: the SQL that makes "exactly one final event per job"
true, and the delivery record a worker's sender claims, updates and retries.

Every write that can make a job final (the counters' UPDATE of the prediction save paths, or
`claim_final` for any other path that ends a job, e.g. a cancel) carries a fresh token and sets
`jobs.finished_by = COALESCE(finished_by, token)` in the same statement as the final status.
The job row's lock serialises concurrent writers (on SQLite, the database lock), so the column
is set exactly once: the one write that reads its own token back (RETURNING on PostgreSQL, a
read in the same transaction on SQLite) made the job final, and only it publishes the event,
after its commit. A second worker storing the job's last items at the same instant, or a
redelivered batch, reads another token and publishes nothing. The event costs no statement of
its own on PostgreSQL; a job with a webhook adds one insert (its `pending` delivery record).

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
from textlstm.store.models import FINISHED_STATUSES, Job, WebhookDelivery, utcnow


@dataclass(frozen=True)
class Finished:
    """A job that reached a final status in this transaction (its one final event)."""

    job_id: uuid.UUID
    status: str
    #: A webhook delivery was recorded for it (`pending`).
    webhook: bool = False


def new_token() -> uuid.UUID:
    """The token of one write (see the module docstring)."""
    return uuid.uuid4()


def finished_events(
    *, session: Session, rows: Iterable[tuple[uuid.UUID, str, str | None, uuid.UUID | None]],
    token: uuid.UUID,
) -> list[Finished]:  # fmt: skip
    """The final events of the (job id, status, webhook URL, finished_by) rows a write with
    `token` read back: those it finished. Records a `pending` webhook delivery for each of them
    that has a URL (insert-or-ignore: one per job)."""
    won = sorted(
        ((jid, status, url) for jid, status, url, by in rows
         if by == token and status in FINISHED_STATUSES),
        key=lambda r: r[0].int,  # one lock order for every writer
    )  # fmt: skip
    hooks = [(jid, url) for jid, _, url in won if url is not None]
    if hooks:
        now = utcnow()
        deliveries: Table = WebhookDelivery.__table__  # type: ignore[assignment]
        rows_in = [
            {"job_id": jid, "url": url, "state": "pending", "attempts": 0,
             "next_attempt_at": now, "created_at": now, "updated_at": now}
            for jid, url in hooks
        ]  # fmt: skip
        insert_ignore(session, deliveries, rows_in, ["job_id"], [])
    return [Finished(jid, status, url is not None) for jid, status, url in won]


def claim_final(*, session: Session, job_ids: Sequence[uuid.UUID]) -> list[Finished]:
    """For a path that sets a final status by its own SQL (a cancel, a recovery), in the same
    transaction, after it: claim the final event of those of `job_ids` that are final and not
    yet claimed. Exactly-once with the save paths and with itself."""
    if not job_ids:
        return []
    token = new_token()
    jobs: Table = Job.__table__  # type: ignore[assignment]
    rows = session.execute(
        update(jobs)
        .where(
            jobs.c.id.in_(sorted(job_ids, key=lambda u: u.int)),
            jobs.c.status.in_(FINISHED_STATUSES),
            jobs.c.finished_by.is_(None),
        )
        .values(finished_by=token)
        .returning(jobs.c.id, jobs.c.status, jobs.c.webhook_url, jobs.c.finished_by)
    ).all()
    return finished_events(session=session, rows=[tuple(r) for r in rows], token=token)


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
