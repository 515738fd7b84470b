"""Storing item outcomes: `save_predictions` (one job) and `save_batch` (a micro-batch of many
jobs), both idempotent and both advancing the jobs' counters in SQL.

The caller owns the transaction (`with factory.begin() as session: ...`): nothing here commits,
so a worker stores a whole micro-batch and its job counters in one transaction, and a test can
roll back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Integer,
    Table,
    Uuid,
    bindparam,
    case,
    cast,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from textlstm.errors import NotFoundError, ValidationError
from textlstm.store.bulk_insert import insert_ignore
from textlstm.store.events import Finished, finished_events, new_token
from textlstm.store.jobs import get_job, job_row, reused_job_id
from textlstm.store.models import Job, Prediction, utcnow

#: What the save paths store; `cancelled` rows are written only by store.jobs.cancel_job,
#: which keeps jobs.cancelled_count.
SAVED_STATUSES = ("ok", "error", "expired")


@dataclass(frozen=True)
class PredictionRecord:
    """One item's outcome as the worker hands it over (`status` is "ok" or "error")."""

    item_index: int
    status: str
    label: str | None = None
    score: float | None = None
    probabilities: Mapping[str, float] | None = None
    external_id: str | None = None
    error: str | None = None
    latency_ms: float | None = None


@dataclass(frozen=True)
class SaveOutcome:
    """What a save did: rows inserted vs. already there, and the job's counters afterwards."""

    inserted: int
    duplicates: int
    ok_count: int
    error_count: int
    expected_count: int
    status: str
    #: The job's final event, when this save made it final (see store/events.py).
    finished: tuple[Finished, ...] = ()


def _check_records(records: Sequence[PredictionRecord], expected: int, job_id: uuid.UUID) -> None:
    seen: set[int] = set()
    for rec in records:
        if rec.status not in SAVED_STATUSES:
            raise ValidationError(f"job {job_id} item {rec.item_index}: bad status {rec.status!r}")
        if rec.status == "ok" and rec.label is None:
            raise ValidationError(f"job {job_id} item {rec.item_index}: an ok item needs a label")
        if not 0 <= rec.item_index < expected:
            raise ValidationError(
                f"job {job_id}: item index {rec.item_index} is outside 0..{expected - 1}"
            )
        if rec.item_index in seen:
            raise ValidationError(f"job {job_id}: item index {rec.item_index} repeated in a batch")
        seen.add(rec.item_index)


def _prediction_rows(
    job_id: uuid.UUID,
    records: Sequence[PredictionRecord],
    model_version_id: int | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """The `predictions` rows of one job's records, in ascending item order: concurrent
    overlapping batches then take row locks in the same order on PostgreSQL, so ON CONFLICT
    waits can never form a deadlock."""
    return [
        {
            "job_id": job_id,
            "item_index": r.item_index,
            "external_id": r.external_id,
            "status": r.status,
            "label": r.label,
            "score": r.score,
            "probabilities": dict(r.probabilities) if r.probabilities is not None else None,
            "error": r.error,
            "model_version_id": model_version_id,
            "latency_ms": r.latency_ms,
            "created_at": now,
        }
        for r in sorted(records, key=lambda rec: rec.item_index)
    ]


def save_predictions(
    *,
    session: Session,
    job_id: uuid.UUID,
    records: Sequence[PredictionRecord],
    model_version_id: int | None = None,
) -> SaveOutcome:
    """Store a micro-batch of item outcomes idempotently and advance the job's counters.

    One bulk INSERT … ON CONFLICT DO NOTHING RETURNING tells which rows are new; only those are
    added to ok/error counts, in one UPDATE whose arithmetic runs in SQL (concurrent workers
    cannot lose increments, and counts never pass the total). Status moves queued → running →
    done (no errors) / expired (every item expired) / failed (no ok items) / partial once
    every item is in; `expired` items count as errors and in expired_count. A `cancelled` job
    stays `cancelled` (textlstm.store.jobs.cancel_job). The job must exist
    (see `ensure_job`, which can run in the same transaction). The caller commits.
    """
    expected = session.scalar(select(Job.expected_count).where(Job.id == job_id))
    if expected is None:
        raise NotFoundError(f"job {job_id} not found")
    _check_records(records, expected, job_id)
    now = utcnow()
    inserted: list[str] = []
    if records:
        rows = _prediction_rows(job_id, records, model_version_id, now)
        table: Table = Prediction.__table__  # type: ignore[assignment]
        inserted = [
            status
            for (status,) in insert_ignore(
                session, table, rows, ["job_id", "item_index"], ["status"]
            ).all()  # fetchall, not row by row
        ]
    ok_new = inserted.count("ok")
    err_new = len(inserted) - ok_new
    exp_new = inserted.count("expired")
    if not inserted:
        job = get_job(session=session, job_id=job_id)
        return SaveOutcome(0, len(records), job.ok_count, job.error_count, expected, job.status)

    jobs: Table = Job.__table__  # type: ignore[assignment]
    token = new_token()
    stmt_u = (
        update(jobs)
        .where(jobs.c.id == job_id)
        .values(_advance(jobs, ok_new, err_new, exp_new, now, model_version_id, token))
        .returning(
            jobs.c.ok_count,
            jobs.c.error_count,
            jobs.c.status,
            jobs.c.webhook_url,
            jobs.c.finished_by,
        )
    )
    ok_count, error_count, status, webhook_url, by = session.execute(stmt_u).one()
    _expire_loaded_jobs(session, [job_id])
    finished = finished_events(
        session=session, rows=[(job_id, status, webhook_url, by)], token=token
    )
    return SaveOutcome(
        len(inserted),
        len(records) - len(inserted),
        ok_count,
        error_count,
        expected,
        status,
        tuple(finished),
    )


def _advance(
    jobs: Table,
    ok_new: Any,
    err_new: Any,
    exp_new: Any,
    now: datetime,
    version: Any,
    token: uuid.UUID,
) -> dict[str, ColumnElement[Any]]:
    """The SET clause that adds new rows to a job's counters and moves its status, in SQL
    (values or bind parameters), so concurrent workers cannot lose increments. `finished_by`
    keeps the token of the first write that made the job final (store/events.py)."""
    new_ok = jobs.c.ok_count + ok_new
    new_err = jobs.c.error_count + err_new
    new_exp = jobs.c.expired_count + exp_new
    finished = new_ok + new_err >= jobs.c.expected_count
    return {
        "ok_count": new_ok,
        "error_count": new_err,
        "expired_count": new_exp,
        "status": case(
            # A cancelled job keeps its final status (cancel_job stored its missing items).
            (jobs.c.status == "cancelled", "cancelled"),
            (~finished, "running"),
            (new_err == 0, "done"),
            (new_exp >= jobs.c.expected_count, "expired"),
            (new_ok == 0, "failed"),
            else_="partial",
        ),
        "started_at": func.coalesce(jobs.c.started_at, now),
        "finished_at": case((finished, func.coalesce(jobs.c.finished_at, now)), else_=None),
        "finished_by": case((finished, func.coalesce(jobs.c.finished_by, token)), else_=None),
        "model_version_id": func.coalesce(jobs.c.model_version_id, version),
    }


@dataclass(frozen=True)
class JobItems:
    """One job's share of a micro-batch, with what creating its row needs.

    `rivals`: items of other messages in the batch with this job id but another total or
    model (a producer bug or a reused id). They cannot all be one job: the one that matches
    the job's row (the first, when the row is new) is stored, the others are reported.
    """

    model_ref: str
    expected: int
    records: Sequence[PredictionRecord]
    metadata: Mapping[str, Any] | None = None
    submitted_at: datetime | None = None
    rivals: Sequence[JobItems] = ()
    webhook_url: str | None = None


class Unstored(NamedTuple):
    """Items of one job id, as one message sent it (its total and model), that got no row.

    The total and model tell a message that lost apart from another message of the same job
    id whose items were stored."""

    job_id: uuid.UUID
    reason: str
    expected: int
    model_ref: str


@dataclass(frozen=True)
class BatchOutcome:
    inserted: int
    duplicates: int
    #: Jobs whose items were not stored, with why (their id is taken by another job).
    skipped: dict[uuid.UUID, str]
    #: Every (job id, total, model) whose items got no row because the job's row disagrees:
    #: the skipped jobs and the losing rivals of stored ones.
    refused: tuple[Unstored, ...] = ()
    #: The jobs this batch made final: their one final event each (store/events.py).
    finished: tuple[Finished, ...] = ()


def _pick(jid: uuid.UUID, part: JobItems, row: Any) -> tuple[JobItems | None, list[Unstored]]:
    """The variant of `part` (itself or a rival) that matches the job's row, if any, and the
    others, refused with the reason."""
    variants = (part, *part.rivals)
    winner = next(
        (v for v in variants if (v.expected, v.model_ref) == (row.expected_count, row.model_ref)),
        None,
    )
    refused = [
        Unstored(
            jid,
            reused_job_id(
                jid, row.expected_count, row.model_ref, v.expected, v.model_ref, "message"
            ),
            v.expected,
            v.model_ref,
        )
        for v in variants
        if v is not winner
    ]
    return winner, refused


def _expire_loaded_jobs(session: Session, job_ids: Iterable[uuid.UUID]) -> None:
    """Forget the counters of any of these jobs the session has loaded: SQL just changed them.
    A worker's session loads none, so it skips the identity-key lookup per job."""
    if not session.identity_map:
        return
    for jid in job_ids:
        key = identity_key(Job, jid)
        if key in session.identity_map:
            session.expire(session.identity_map[key])


def _uuid_order(u: uuid.UUID) -> int:
    """Sort key giving UUID order (UUID.__lt__ is Python code: 1,024 ids sorted in ~4 ms)."""
    return u.int


def _among(session: Session, column: Any, ids: Sequence[uuid.UUID]) -> ColumnElement[bool]:
    """`column IN ids`; on PostgreSQL as `= ANY(array)`, one parameter: psycopg took ~9 ms to
    split a query text with 1,024 placeholders, on every batch."""
    if session.get_bind().dialect.name == "postgresql":
        return column == func.any(cast(bindparam("among", list(ids)), postgresql.ARRAY(Uuid)))
    return column.in_(ids)


def _advance_jobs(
    session: Session,
    new: Mapping[uuid.UUID, Sequence[int]],
    now: datetime,
    model_version_id: int | None,
    token: uuid.UUID,
) -> list[tuple[uuid.UUID, str, str | None, uuid.UUID | None]]:
    """Add each job's new [ok, error, expired] rows to its counters (the SQL of `_advance`);
    return (id, status, webhook URL, finished_by) of those this write made final.

    On PostgreSQL one UPDATE joins the jobs to the counts as arrays (`unnest`): a batch of 128
    one-text jobs was 128 executions of a prepared UPDATE, about half of the server's time for
    that batch. A joined UPDATE takes its row locks in whatever order its plan reads them, and
    two workers updating the same jobs in different orders would deadlock, so the UPDATE is
    driven by a materialised CTE that locks the jobs in id order (`locked`): every plan reads
    it in that order. One statement, not a locking SELECT and then the UPDATE (a round trip
    and ~2 µs of client time per job saved). A job another writer updated meanwhile is
    re-read by PostgreSQL before it is changed, so no increment is lost (tested with
    concurrent writers). SQLite has one writer at a time: one executemany, then the jobs it
    finished are read back in the same transaction (PostgreSQL: RETURNING, no statement more).
    """
    jobs: Table = Job.__table__  # type: ignore[assignment]
    order = sorted(new, key=_uuid_order)
    if session.get_bind().dialect.name != "postgresql":
        stmt = (
            update(jobs)
            .where(jobs.c.id == bindparam("b_id"))
            .values(
                _advance(
                    jobs,
                    bindparam("b_ok"),
                    bindparam("b_err"),
                    bindparam("b_exp"),
                    now,
                    model_version_id,
                    token,
                )
            )
        )
        session.connection().execute(
            stmt,
            [{"b_id": j, "b_ok": new[j][0], "b_err": new[j][1], "b_exp": new[j][2]} for j in order],
        )
        done = select(jobs.c.id, jobs.c.status, jobs.c.webhook_url, jobs.c.finished_by).where(
            jobs.c.id.in_(order), jobs.c.finished_by == token
        )
        return [(r[0], r[1], r[2], r[3]) for r in session.execute(done)]
    ids = cast(bindparam("ids", order), postgresql.ARRAY(Uuid))
    locked = (
        select(jobs.c.id)
        .where(jobs.c.id == func.any(ids))
        .order_by(jobs.c.id)
        .with_for_update(key_share=True)  # FOR NO KEY UPDATE: the lock UPDATE takes
        .cte("locked")
        .prefix_with("MATERIALIZED")
    )
    counts = (
        func.unnest(
            ids,
            *(
                cast(bindparam(f"n{k}", [new[j][k] for j in order]), postgresql.ARRAY(Integer))
                for k in range(3)
            ),
        )
        .table_valued("id", "ok", "err", "exp")
        .render_derived(name="c")
    )
    rows = session.execute(
        update(jobs)
        .where(jobs.c.id == locked.c.id, counts.c.id == locked.c.id)
        .values(
            _advance(jobs, counts.c.ok, counts.c.err, counts.c.exp, now, model_version_id, token)
        )
        .returning(jobs.c.id, jobs.c.status, jobs.c.webhook_url, jobs.c.finished_by)
    ).all()
    return [(r[0], r[1], r[2], r[3]) for r in rows if r[3] == token]


def save_batch(
    *,
    session: Session,
    jobs: Mapping[uuid.UUID, JobItems],
    model_version_id: int | None = None,
) -> BatchOutcome:
    """Store a micro-batch that holds items of many jobs in a few statements, however many.

    `ensure_job` + `save_predictions` per job cost five round trips a job: a batch of 128
    one-text jobs (what the batching producer sends) spent more time in them than in the model.
    Here: read the job rows (creating the missing ones, insert-or-ignore, and reading those
    back), insert every prediction (insert-or-ignore, RETURNING which are new), and advance the
    counters of the jobs that got new rows (`_advance_jobs`, the same SQL as save_predictions).
    Rows go in ascending (job, index) order and jobs are locked in ascending id order, so
    concurrent workers on PostgreSQL never deadlock. A job id that is already used by a
    different job (other total or model) is skipped and named in the outcome; of a job's
    rivals (see JobItems), the one that matches the row is stored and the others are named in
    `refused`. The caller commits.
    """
    if not jobs:
        return BatchOutcome(0, 0, {})
    order = sorted(jobs, key=_uuid_order)
    job_table: Table = Job.__table__  # type: ignore[assignment]
    now = utcnow()

    def read(ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Any]:
        cols = (job_table.c.id, job_table.c.expected_count, job_table.c.model_ref)
        stmt = select(*cols).where(_among(session, job_table.c.id, ids))
        return {r.id: r for r in session.execute(stmt)}

    # Read first: producers record their jobs, so usually every row is there and nothing is
    # inserted. Missing ones (jobs sent without a record) are created, then read back: a row
    # a concurrent writer inserted first is not in RETURNING.
    found = read(order)
    missing = [jid for jid in order if jid not in found]
    if missing:
        insert_ignore(
            session,
            job_table,
            [
                job_row(
                    jid, j.model_ref, j.expected, j.metadata, j.submitted_at or now, j.webhook_url
                )
                for jid, j in ((k, jobs[k]) for k in missing)
            ],
            ["id"],
            [],
        )
        found |= read(missing)
    skipped: dict[uuid.UUID, str] = {}
    refused: list[Unstored] = []
    rows: list[dict[str, Any]] = []
    for jid in order:
        part, row = jobs[jid], found[jid]
        if row.expected_count != part.expected or row.model_ref != part.model_ref or part.rivals:
            winner, lost = _pick(jid, part, row)
            refused += lost
            if winner is None:
                skipped[jid] = reused_job_id(jid, row.expected_count, row.model_ref, part.expected,
                                       part.model_ref)  # fmt: skip
                continue
            part = winner
        _check_records(part.records, part.expected, jid)
        rows += _prediction_rows(jid, part.records, model_version_id, now)
    if not rows:
        return BatchOutcome(0, 0, skipped, tuple(refused))
    new: dict[uuid.UUID, list[int]] = {}
    table: Table = Prediction.__table__  # type: ignore[assignment]
    for jid, status in insert_ignore(
        session, table, rows, ["job_id", "item_index"], ["job_id", "status"]
    ).all():  # fetchall, not row by row
        counts = new.setdefault(jid, [0, 0, 0])
        counts[0 if status == "ok" else 1] += 1
        counts[2] += status == "expired"
    finished: list[Finished] = []
    if new:
        token = new_token()
        final = _advance_jobs(session, new, now, model_version_id, token)
        _expire_loaded_jobs(session, new)
        finished = finished_events(session=session, rows=final, token=token)
    inserted = sum(sum(c[:2]) for c in new.values())
    return BatchOutcome(inserted, len(rows) - inserted, skipped, tuple(refused), tuple(finished))


def add_prediction(
    *,
    session: Session,
    job_id: uuid.UUID,
    record: PredictionRecord,
    model_version_id: int | None = None,
) -> None:
    """Add one prediction row through the ORM, as the Celery tutorial would: no idempotence,
    no job counters. Only the naive baseline of bench/celery_variants.py writes this way, so
    the benchmark measures what `save_batch` saves over it. The caller commits."""
    session.add(
        Prediction(
            job_id=job_id,
            item_index=record.item_index,
            status=record.status,
            label=record.label,
            score=record.score,
            probabilities=dict(record.probabilities) if record.probabilities is not None else None,
            error=record.error,
            model_version_id=model_version_id,
        )
    )
