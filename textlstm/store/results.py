"""Reading what was stored: a job's predictions in item order, which items have no row yet,
and the counts and timings benchmarks read while a run goes on.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from textlstm.store.models import Job, Prediction


def iter_predictions(
    *, session: Session, job_id: uuid.UUID, page_size: int = 1000
) -> Iterator[Prediction]:
    """A job's predictions in item order, read in pages by keyset (fine for millions of rows)."""
    last = -1
    while True:
        page = list(
            session.scalars(
                select(Prediction)
                .where(Prediction.job_id == job_id, Prediction.item_index > last)
                .order_by(Prediction.item_index)
                .limit(page_size)
            )
        )
        yield from page
        if len(page) < page_size:
            return
        last = page[-1].item_index


def missing_indexes(*, session: Session, job: Job) -> list[int]:
    """Item indexes of `job` without a row, ascending (what recovery re-enqueues)."""
    have = set(session.scalars(select(Prediction.item_index).where(Prediction.job_id == job.id)))
    return [i for i in range(job.expected_count) if i not in have]


def count_predictions(*, session: Session, job_id: uuid.UUID | None = None) -> int:
    """Rows stored, in all or of one job (counted on the primary key). Benchmarks poll it: at
    100,000 rows a count of the whole table takes ~5 ms, so poll it sparingly."""
    stmt = select(func.count()).select_from(Prediction)
    if job_id is not None:
        stmt = stmt.where(Prediction.job_id == job_id)
    return int(session.scalar(stmt) or 0)


def stored_since(*, session: Session, since: datetime) -> list[tuple[datetime, datetime]]:
    """(row created_at, its job's submitted_at) of every prediction stored at or after `since`:
    the end-to-end latency of each item, as a benchmark measures it."""
    stmt = (
        select(Prediction.created_at, Job.submitted_at)
        .join(Job, Job.id == Prediction.job_id)
        .where(Prediction.created_at >= since)
    )
    return [(created, submitted) for created, submitted in session.execute(stmt)]
