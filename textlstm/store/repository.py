"""Every SQL query of the service, as keyword-only functions that take a session.

The caller owns the transaction (`with factory.begin() as session: ...`): nothing here commits, so
a worker can store a whole micro-batch and its job counters in one transaction, and a test can
roll back. Writes that may be repeated (a redelivered message, a re-run registration) use
insert-or-ignore on the natural key, on PostgreSQL and SQLite alike.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    JSON,
    ColumnElement,
    Insert,
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
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from textlstm.errors import NotFoundError, ValidationError
from textlstm.store.models import (
    ITEM_STATUSES,
    JOB_STATUSES,
    Blob,
    Job,
    ModelAlias,
    ModelVersion,
    Prediction,
    utcnow,
)


def _insert(session: Session, table: Table) -> Insert:
    """A dialect insert that supports ON CONFLICT DO NOTHING (both dialects spell it alike)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


# --------------------------------------------------------------------------------------------
# Jobs and predictions


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


def _reused(
    job_id: uuid.UUID, had: int, had_model: str, expected: int, model_ref: str, this: str = "one"
) -> str:
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
) -> tuple[Job, bool]:
    """Create the job row as `queued` unless it exists; return (job, created).

    Race-free (insert-or-ignore), so the producer and any number of workers may all call it. An
    existing job must agree on item count and model reference: a reused job id is an error.
    """
    if expected < 1:
        raise ValidationError("a job needs at least one item")
    stmt = (
        _insert(session, Job.__table__)  # type: ignore[arg-type]
        .values(
            id=job_id,
            model_ref=model_ref,
            status="queued",
            expected_count=expected,
            ok_count=0,
            error_count=0,
            submitted_at=submitted_at or utcnow(),
            metadata=dict(metadata) if metadata is not None else None,
        )
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(Job.__table__.c.id)
    )
    created = session.execute(stmt).first() is not None  # RETURNING is empty when it existed
    job = get_job(session=session, job_id=job_id)
    if job.expected_count != expected or job.model_ref != model_ref:
        raise ValidationError(
            _reused(job_id, job.expected_count, job.model_ref, expected, model_ref)
        )
    return job, created


def _job_row(
    job_id: uuid.UUID,
    model_ref: str,
    expected: int,
    metadata: Mapping[str, Any] | None,
    submitted_at: datetime,
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
        _job_row(j["job_id"], j["model_ref"], j["expected"], j.get("metadata"),
                 j.get("submitted_at") or now)
        for j in jobs
    ]  # fmt: skip
    rows.sort(key=lambda r: r["id"].int)  # one lock order for every writer (.int: C compares)
    table: Table = Job.__table__  # type: ignore[assignment]
    return _insert_ignore(session, table, rows, ["id"], []).rowcount  # no RETURNING


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


def _check_records(records: Sequence[PredictionRecord], expected: int, job_id: uuid.UUID) -> None:
    seen: set[int] = set()
    for rec in records:
        if rec.status not in ITEM_STATUSES:
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
    every item is in; `expired` items count as errors and in expired_count. The job must exist
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
            for (status,) in _insert_ignore(
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
    stmt_u = (
        update(jobs)
        .where(jobs.c.id == job_id)
        .values(_advance(jobs, ok_new, err_new, exp_new, now, model_version_id))
        .returning(jobs.c.ok_count, jobs.c.error_count, jobs.c.status)
    )
    ok_count, error_count, status = session.execute(stmt_u).one()
    _expire_loaded_jobs(session, [job_id])
    return SaveOutcome(
        len(inserted), len(records) - len(inserted), ok_count, error_count, expected, status
    )


def _advance(
    jobs: Table, ok_new: Any, err_new: Any, exp_new: Any, now: datetime, version: Any
) -> dict[str, ColumnElement[Any]]:
    """The SET clause that adds new rows to a job's counters and moves its status, in SQL
    (values or bind parameters), so concurrent workers cannot lose increments."""
    new_ok = jobs.c.ok_count + ok_new
    new_err = jobs.c.error_count + err_new
    new_exp = jobs.c.expired_count + exp_new
    finished = new_ok + new_err >= jobs.c.expected_count
    return {
        "ok_count": new_ok,
        "error_count": new_err,
        "expired_count": new_exp,
        "status": case(
            (~finished, "running"),
            (new_err == 0, "done"),
            (new_exp >= jobs.c.expected_count, "expired"),
            (new_ok == 0, "failed"),
            else_="partial",
        ),
        "started_at": func.coalesce(jobs.c.started_at, now),
        "finished_at": case((finished, func.coalesce(jobs.c.finished_at, now)), else_=None),
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
            _reused(jid, row.expected_count, row.model_ref, v.expected, v.model_ref, "message"),
            v.expected,
            v.model_ref,
        )
        for v in variants
        if v is not winner
    ]
    return winner, refused


def _insert_ignore(
    session: Session, table: Table, rows: list[dict[str, Any]], key: list[str], returning: list[str]
) -> CursorResult[Any]:
    """Insert-or-ignore `rows` (all with the same keys) on the `key` conflict. The result holds
    the `returning` columns of the rows that were new; its rowcount is how many were new.

    On PostgreSQL the rows travel as one array per column into `INSERT … SELECT FROM unnest(…)`:
    one short statement whatever the batch size. SQLAlchemy's multi-row VALUES made psycopg
    split and convert a new query text of ~1,400 parameters every batch (6 of the 18 ms a
    128-row batch of predictions took, measured with cProfile). A column with one value in
    every row (the job, the model, the time, a NULL error) is sent once, as a scalar, and the
    values go in psycopg's binary format. The statement is plain driver SQL (our own column
    names, every value a parameter) because SQLAlchemy's placeholders are always text format.
    SQLite keeps the multi-row VALUES. Rows go in the order given (callers sort them: one lock
    order for every writer).
    """
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        stmt = _insert(session, table).on_conflict_do_nothing(index_elements=key)
        if returning:
            stmt = stmt.returning(*(table.c[c] for c in returning))
        return session.connection().execute(stmt, rows)
    cols = [table.c[name] for name in rows[0]]
    json_cols = {c.name for c in cols if isinstance(c.type, JSON)}

    def bound(name: str, value: Any) -> Any:
        return json.dumps(value) if name in json_cols and value is not None else value

    values = {c.name: [r[c.name] for r in rows] for c in cols}
    same = {name for name, vs in values.items() if vs.count(vs[0]) == len(vs)}
    if len(same) == len(cols) and len(rows) > 1:
        same.discard(cols[0].name)  # identical rows still go in once each
    params = {
        name: bound(name, vs[0]) if name in same else [bound(name, v) for v in vs]
        for name, vs in values.items()
    }
    varying = [c for c in cols if c.name not in same]

    def param(c: Any, array: str = "") -> str:
        # %(name)b: psycopg sends the value in binary, so an array is packed in C; in text
        # every element went through Python quoting (9 ms against 1 ms for 1,024 rows).
        return f"CAST(%({c.name})b AS {c.type.compile(dialect=dialect)}{array})"

    picked = ", ".join(param(c) if c.name in same else f"u.{c.name}" for c in cols)
    source = (
        f" FROM unnest({', '.join(param(c, '[]') for c in varying)})"
        f" AS u({', '.join(c.name for c in varying)})"
        if varying
        else ""
    )
    sql = (
        f"INSERT INTO {table.name} ({', '.join(c.name for c in cols)}) SELECT {picked}{source}"
        f" ON CONFLICT ({', '.join(key)}) DO NOTHING"
        + (f" RETURNING {', '.join(returning)}" if returning else "")
    )
    return session.connection().exec_driver_sql(sql, params)


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
) -> None:
    """Add each job's new [ok, error, expired] rows to its counters (the SQL of `_advance`).

    On PostgreSQL one UPDATE joins the jobs to the counts as arrays (`unnest`): a batch of 128
    one-text jobs was 128 executions of a prepared UPDATE, about half of the server's time for
    that batch. A joined UPDATE takes its row locks in whatever order its plan reads them, and
    two workers updating the same jobs in different orders would deadlock, so the UPDATE is
    driven by a materialised CTE that locks the jobs in id order (`locked`): every plan reads
    it in that order. One statement, not a locking SELECT and then the UPDATE (a round trip
    and ~2 µs of client time per job saved). A job another writer updated meanwhile is
    re-read by PostgreSQL before it is changed, so no increment is lost (tested with
    concurrent writers). SQLite has one writer at a time: one executemany.
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
                )
            )
        )
        session.connection().execute(
            stmt,
            [{"b_id": j, "b_ok": new[j][0], "b_err": new[j][1], "b_exp": new[j][2]} for j in order],
        )
        return
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
    session.execute(
        update(jobs)
        .where(jobs.c.id == locked.c.id, counts.c.id == locked.c.id)
        .values(_advance(jobs, counts.c.ok, counts.c.err, counts.c.exp, now, model_version_id))
    )


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
        _insert_ignore(
            session,
            job_table,
            [
                _job_row(jid, j.model_ref, j.expected, j.metadata, j.submitted_at or now)
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
                skipped[jid] = _reused(jid, row.expected_count, row.model_ref, part.expected,
                                       part.model_ref)  # fmt: skip
                continue
            part = winner
        _check_records(part.records, part.expected, jid)
        rows += _prediction_rows(jid, part.records, model_version_id, now)
    if not rows:
        return BatchOutcome(0, 0, skipped, tuple(refused))
    new: dict[uuid.UUID, list[int]] = {}
    table: Table = Prediction.__table__  # type: ignore[assignment]
    for jid, status in _insert_ignore(
        session, table, rows, ["job_id", "item_index"], ["job_id", "status"]
    ).all():  # fetchall, not row by row
        counts = new.setdefault(jid, [0, 0, 0])
        counts[0 if status == "ok" else 1] += 1
        counts[2] += status == "expired"
    if new:
        _advance_jobs(session, new, now, model_version_id)
        _expire_loaded_jobs(session, new)
    inserted = sum(sum(c[:2]) for c in new.values())
    return BatchOutcome(inserted, len(rows) - inserted, skipped, tuple(refused))


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


# --------------------------------------------------------------------------------------------
# Model registry


def missing_blobs(*, session: Session, digests: Iterable[str]) -> set[str]:
    wanted = set(digests)
    if not wanted:
        return set()
    have = set(session.scalars(select(Blob.sha256).where(Blob.sha256.in_(wanted))))
    return wanted - have


def put_blobs(*, session: Session, blobs: Mapping[str, bytes]) -> int:
    """Store content-addressed bytes (keys must be their sha256); skip ones already stored.

    Bytes already in the database are not even sent, so re-registering a model is cheap.
    Returns how many blobs were new.
    """
    new = missing_blobs(session=session, digests=blobs)
    if not new:
        return 0
    now = utcnow()
    rows = [{"sha256": d, "size": len(blobs[d]), "data": blobs[d], "created_at": now} for d in new]
    table: Table = Blob.__table__  # type: ignore[assignment]
    session.execute(_insert(session, table).on_conflict_do_nothing(index_elements=["sha256"]), rows)
    return len(new)


def get_blob(*, session: Session, sha256: str) -> bytes | None:
    return session.scalar(select(Blob.data).where(Blob.sha256 == sha256))


def get_model_version(*, session: Session, name: str, version: int) -> ModelVersion | None:
    return session.scalar(
        select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version)
    )


def get_model_version_by_id(*, session: Session, model_version_id: int) -> ModelVersion | None:
    return session.get(ModelVersion, model_version_id)


def find_model_version_by_digest(
    *, session: Session, name: str, bundle_sha256: str
) -> ModelVersion | None:
    return session.scalar(
        select(ModelVersion).where(
            ModelVersion.name == name, ModelVersion.bundle_sha256 == bundle_sha256
        )
    )


def latest_model_version(*, session: Session, name: str) -> ModelVersion | None:
    return session.scalar(
        select(ModelVersion)
        .where(ModelVersion.name == name)
        .order_by(ModelVersion.version.desc())
        .limit(1)
    )


def add_model_version(
    *,
    session: Session,
    name: str,
    bundle_sha256: str,
    bundle_size: int,
    labels: list[str],
    config: dict[str, Any],
    metrics: dict[str, Any],
    data_fingerprint: str | None,
    tags: dict[str, str],
) -> ModelVersion:
    """Insert the next version of `name` (max + 1). Two concurrent registrations of different
    bundles under one name collide on uq_model_versions_name_version; the loser's transaction
    fails with IntegrityError and can simply be retried."""
    current = session.scalar(
        select(func.max(ModelVersion.version)).where(ModelVersion.name == name)
    )
    mv = ModelVersion(
        name=name,
        version=(current or 0) + 1,
        bundle_sha256=bundle_sha256,
        bundle_size=bundle_size,
        labels=labels,
        config=config,
        metrics=metrics,
        data_fingerprint=data_fingerprint,
        tags=tags,
        created_at=utcnow(),
    )
    session.add(mv)
    session.flush()
    return mv


def list_model_versions(*, session: Session, name: str | None = None) -> list[ModelVersion]:
    stmt = select(ModelVersion).order_by(ModelVersion.name, ModelVersion.version)
    if name is not None:
        stmt = stmt.where(ModelVersion.name == name)
    return list(session.scalars(stmt))


def get_alias(*, session: Session, name: str, alias: str) -> ModelAlias | None:
    return session.get(ModelAlias, (name, alias))


def list_aliases(*, session: Session, name: str | None = None) -> list[ModelAlias]:
    stmt = select(ModelAlias).order_by(ModelAlias.name, ModelAlias.alias)
    if name is not None:
        stmt = stmt.where(ModelAlias.name == name)
    return list(session.scalars(stmt))


def set_alias(*, session: Session, name: str, alias: str, version: int) -> int | None:
    """Point `name@alias` at `version` (creating or moving it); return the previous version."""
    row = session.get(ModelAlias, (name, alias), with_for_update=True)
    if row is None:
        session.add(ModelAlias(name=name, alias=alias, version=version, updated_at=utcnow()))
        session.flush()
        return None
    previous = row.version
    if previous != version:
        row.version = version
        row.updated_at = utcnow()
        session.flush()
    return previous
