"""Retention queries: find finished jobs older than a cutoff, and delete them with their
predictions, a bounded number of rows per call (textlstm/ops/retention.py drives the batches
and commits between them).

Why every delete re-checks "final and old enough" itself, rather than trusting the ids a
previous SELECT returned: the candidates are read in one transaction and deleted in later
ones, while workers keep writing. The job rows are locked first (`FOR UPDATE SKIP LOCKED` on
PostgreSQL: a job a worker is updating right now is skipped, never waited for, and two purges
never work on the same job), then the DELETE statements carry the same condition again. A job
that is queued or running, or finished after the cutoff, is never touched.

Age is measured from `finished_at`, set when a job's last item is stored (store/predictions.py)
and indexed for this (migration 0004_retention). A job in a final status without
`finished_at` (none is written so by this code; a row edited by hand or an older writer could
be) is aged from `submitted_at` instead, so it is not kept for ever.

Nothing here commits: the caller owns the transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, ColumnElement, and_, delete, exists, func, or_, select
from sqlalchemy.orm import Session

from textlstm.store.models import Job, Prediction

_jobs = Job.__table__
_predictions = Prediction.__table__


def purgeable(statuses: Sequence[str], cutoff: datetime) -> ColumnElement[bool]:
    """The condition every purge statement carries: in one of `statuses` (final ones, checked
    by the caller) and finished before `cutoff`."""
    return and_(
        Job.status.in_(list(statuses)),
        or_(
            Job.finished_at < cutoff,
            and_(Job.finished_at.is_(None), Job.submitted_at < cutoff),
        ),
    )


@dataclass(frozen=True)
class Candidate:
    """A job a purge may delete: its id, when it finished (the keyset position) and how many
    prediction rows it holds (its counters, kept in the same transaction as its rows)."""

    job_id: uuid.UUID
    finished_at: datetime
    rows: int


def purge_totals(*, session: Session, statuses: Sequence[str], cutoff: datetime) -> tuple[int, int]:
    """(jobs, prediction rows) a purge would delete now: from the job counters, so a dry run
    reads the jobs index and never the predictions table."""
    jobs, rows = session.execute(
        select(func.count(), func.coalesce(func.sum(Job.ok_count + Job.error_count), 0)).where(
            purgeable(statuses, cutoff)
        )
    ).one()
    return int(jobs), int(rows)


def purge_candidates(
    *,
    session: Session,
    statuses: Sequence[str],
    cutoff: datetime,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
    unstamped: bool = False,
) -> list[Candidate]:
    """The next `limit` purgeable jobs after the keyset position `after`, oldest first.

    By (finished_at, id) on ix_jobs_finished_at; with `unstamped`, the final jobs that have
    no finished_at, by (submitted_at, id). Keyset rather than "the first N again": a job
    skipped (locked, or no longer purgeable) is not read again and again.
    """
    when = Job.submitted_at if unstamped else Job.finished_at
    stmt = select(Job.id, when, Job.ok_count + Job.error_count).where(
        purgeable(statuses, cutoff),
        Job.finished_at.is_(None) if unstamped else Job.finished_at.is_not(None),
    )
    if after is not None:
        at, last = after
        stmt = stmt.where(or_(when > at, and_(when == at, Job.id > last)))
    rows = session.execute(stmt.order_by(when, Job.id).limit(limit)).all()
    return [Candidate(jid, at, int(n)) for jid, at, n in rows]


def _lock(
    session: Session, job_ids: Sequence[uuid.UUID], statuses: Sequence[str], cutoff: datetime
) -> list[uuid.UUID]:
    """Lock the rows of those jobs that are still purgeable; skip rows locked by anyone else
    (PostgreSQL; SQLite's single writer lock serialises whole transactions instead)."""
    stmt = (
        select(Job.id)
        .where(Job.id.in_(list(job_ids)), purgeable(statuses, cutoff))
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(stmt))


def _job_still_purgeable(statuses: Sequence[str], cutoff: datetime) -> Any:
    return exists(
        select(Job.id).where(Job.id == _predictions.c.job_id, purgeable(statuses, cutoff))
    )


def job_dependents() -> list[Column[Any]]:
    """The columns of every other table that refer to jobs.id (predictions aside, which are
    deleted in bounded batches): their rows go with the job, in its transaction.

    Read from the ORM metadata rather than listed by hand, so a table added later with a key
    to jobs (webhook deliveries, say) is purged too instead of making the job's DELETE fail
    on its foreign key.
    """
    found = []
    for table in Job.metadata.sorted_tables:
        if table is _predictions:
            continue
        for fk in table.foreign_keys:
            if fk.column is _jobs.c.id:
                found.append(fk.parent)
    return found


def delete_jobs(
    *, session: Session, job_ids: Sequence[uuid.UUID], statuses: Sequence[str], cutoff: datetime
) -> tuple[int, int]:
    """Delete those of `job_ids` still purgeable, predictions first, then the job rows;
    return (jobs, predictions) deleted. The caller bounds the rows (a few jobs' counters)."""
    locked = _lock(session, job_ids, statuses, cutoff)
    if not locked:
        return 0, 0
    rows = session.execute(
        delete(_predictions).where(
            _predictions.c.job_id.in_(locked), _job_still_purgeable(statuses, cutoff)
        )
    ).rowcount
    for column in job_dependents():
        session.execute(
            delete(column.table).where(
                column.in_(locked),
                exists(select(Job.id).where(Job.id == column, purgeable(statuses, cutoff))),
            )
        )
    jobs = session.execute(
        delete(_jobs).where(_jobs.c.id.in_(locked), purgeable(statuses, cutoff))
    ).rowcount
    return int(jobs), int(rows)


def delete_job_rows(
    *,
    session: Session,
    job_id: uuid.UUID,
    start: int,
    stop: int,
    statuses: Sequence[str],
    cutoff: datetime,
) -> int | None:
    """Delete the predictions of items start <= item_index < stop of one big job (a range of
    its primary key), if the job is still purgeable; return the rows deleted, or None when the
    job is not purgeable (any more) or is locked by another purge."""
    if not _lock(session, [job_id], statuses, cutoff):
        return None
    result = session.execute(
        delete(_predictions).where(
            _predictions.c.job_id == job_id,
            _predictions.c.item_index >= start,
            _predictions.c.item_index < stop,
            _job_still_purgeable(statuses, cutoff),
        )
    )
    return int(result.rowcount)
