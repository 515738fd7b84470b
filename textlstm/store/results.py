"""Reading what was stored: a job's predictions in item order, which items have no row yet,
and the counts and timings benchmarks read while a run goes on.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, literal, select, tuple_
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


@dataclass(frozen=True)
class Selection:
    """Which stored predictions an export takes; every field narrows it (None: no filter).

    `max_score` keeps rows whose top probability is at most that (low-confidence items, for
    labelling); error and expired rows have no score and are left out by it."""

    job_id: uuid.UUID | None = None
    model_version_ids: Sequence[int] | None = None
    since: datetime | None = None  # created_at >= since
    until: datetime | None = None  # created_at < until
    max_score: float | None = None
    #: With `job_id`: only items whose index is above this (a reader's cursor).
    after_index: int | None = None


def iter_selected(
    *, session: Session, selection: Selection, page_size: int = 1000
) -> Iterator[Prediction]:
    """Predictions matching `selection`, job by job in item order, in pages by keyset on the
    primary key, so memory stays constant and each page starts where the last one ended.

    Ordering by the primary key (not by time) is what keeps a page cheap: any other order needs
    an index of its own, or each page sorts every remaining row (measured: 5,500 rows/s on a
    million rows ordered by created_at, against ~18,500 on the key: bench/results/export.md).
    The filters are checked as the key is walked, so one export reads the table at most once.
    """
    conditions = []
    if selection.model_version_ids is not None:
        conditions.append(Prediction.model_version_id.in_(list(selection.model_version_ids)))
    if selection.since is not None:
        conditions.append(Prediction.created_at >= selection.since)
    if selection.until is not None:
        conditions.append(Prediction.created_at < selection.until)
    if selection.max_score is not None:
        conditions.append(Prediction.score <= selection.max_score)
    if selection.job_id is not None:
        conditions.append(Prediction.job_id == selection.job_id)
        if selection.after_index is not None:
            conditions.append(Prediction.item_index > selection.after_index)
    key = (Prediction.job_id, Prediction.item_index)
    last: tuple[object, ...] | None = None
    while True:
        stmt = select(Prediction).where(*conditions).order_by(*key).limit(page_size)
        if last is not None:
            # Typed binds: a UUID is stored the column's way on each dialect.
            after = [literal(v, c.type) for v, c in zip(last, key, strict=True)]
            stmt = stmt.where(tuple_(*key) > tuple_(*after))
        page = list(session.scalars(stmt))
        yield from page
        if len(page) < page_size:
            return
        row = page[-1]
        last = (row.job_id, row.item_index)


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
