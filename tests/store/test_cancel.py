"""Cancelling a job in SQL (`cancel_job`) on real PostgreSQL and SQLite: the items without a row
become `cancelled`, the job ends `cancelled` once, and workers storing later change nothing."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from textlstm.errors import NotFoundError
from textlstm.store.jobs import cancel_job, ensure_job, get_job, job_counts
from textlstm.store.models import Prediction
from textlstm.store.predictions import JobItems, PredictionRecord, save_batch, save_predictions


def ok(i: int) -> PredictionRecord:
    return PredictionRecord(i, "ok", label="pos", score=0.9, probabilities={"pos": 0.9})


def new_job(factory: sessionmaker[Session], expected: int, stored: range = range(0)) -> uuid.UUID:
    job_id = uuid.uuid4()
    with factory.begin() as s:
        ensure_job(session=s, job_id=job_id, model_ref="m", expected=expected)
        if stored:
            save_predictions(session=s, job_id=job_id, records=[ok(i) for i in stored])
    return job_id


def statuses(factory: sessionmaker[Session], job_id: uuid.UUID) -> dict[str, int]:
    with factory() as s:
        rows = s.execute(
            select(Prediction.status, func.count())
            .where(Prediction.job_id == job_id)
            .group_by(Prediction.status)
        ).all()
    return {status: int(n) for status, n in rows}


def test_cancel_stores_the_missing_items_as_cancelled_and_ends_the_job(
    session_factory: sessionmaker[Session],
) -> None:
    job_id = new_job(session_factory, 1000, range(0, 30))
    with session_factory.begin() as s:
        out = cancel_job(session=s, job_id=job_id)
    assert (out.previous, out.status, out.cancelled, out.ok, out.changed) == (
        "running", "cancelled", 970, 30, True
    )  # fmt: skip
    assert statuses(session_factory, job_id) == {"ok": 30, "cancelled": 970}
    with session_factory() as s:
        job = get_job(session=s, job_id=job_id)
        assert (job.status, job.ok_count, job.error_count, job.cancelled_count) == (
            "cancelled", 30, 970, 0 + 970
        )  # fmt: skip
        assert job.finished_at is not None and job.expired_count == 0
        row = s.get(Prediction, (job_id, 999))
        assert row is not None and row.label is None and row.error.startswith("cancelled at ")
        assert job_counts(session=s)["cancelled"] == 1


def test_cancel_is_idempotent_and_leaves_final_jobs_alone(
    session_factory: sessionmaker[Session],
) -> None:
    queued = new_job(session_factory, 5)
    done = new_job(session_factory, 3, range(3))
    with session_factory.begin() as s:
        first = cancel_job(session=s, job_id=queued)
    with session_factory.begin() as s:
        again = cancel_job(session=s, job_id=queued)
        finished = cancel_job(session=s, job_id=done)
    assert (first.previous, first.cancelled, first.changed) == ("queued", 5, True)
    assert (again.previous, again.status, again.cancelled, again.changed) == (
        "cancelled", "cancelled", 0, False
    )  # fmt: skip
    assert (finished.status, finished.cancelled, finished.changed) == ("done", 0, False)
    assert statuses(session_factory, queued) == {"cancelled": 5}
    assert statuses(session_factory, done) == {"ok": 3}
    with session_factory.begin() as s, pytest.raises(NotFoundError, match="not found"):
        cancel_job(session=s, job_id=uuid.uuid4())


def test_a_worker_storing_after_the_cancel_inserts_nothing_and_the_job_stays_cancelled(
    session_factory: sessionmaker[Session],
) -> None:
    job_id = new_job(session_factory, 10, range(2))
    with session_factory.begin() as s:
        cancel_job(session=s, job_id=job_id)
    with session_factory.begin() as s:
        out = save_batch(session=s, jobs={job_id: JobItems("m", 10, [ok(i) for i in range(2, 6)])})
        single = save_predictions(session=s, job_id=job_id, records=[ok(7)])
    assert (out.inserted, out.duplicates, single.inserted, single.status) == (0, 4, 0, "cancelled")
    with session_factory() as s:
        job = get_job(session=s, job_id=job_id)
        assert (job.status, job.ok_count, job.error_count, job.cancelled_count) == (
            "cancelled", 2, 8, 8
        )  # fmt: skip


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_cancel_racing_an_uncommitted_worker_batch_counts_every_item_once(
    session_factory: sessionmaker[Session],
) -> None:
    """A worker's batch of items 100..199 is inserted but not committed when the cancel
    starts: the cancel waits on those rows, then leaves them to the worker and counts the
    rest. Every item has one row and the counters add up."""
    job_id = new_job(session_factory, 500, range(50))
    worker = session_factory()
    worker.begin()
    save_batch(session=worker, jobs={job_id: JobItems("m", 500, [ok(i) for i in range(100, 200)])})
    result: dict[str, object] = {}

    def cancel() -> None:
        with session_factory.begin() as s:
            result["out"] = cancel_job(session=s, job_id=job_id)

    t = threading.Thread(target=cancel)
    t.start()
    t.join(0.5)
    assert t.is_alive(), "the cancel should wait for the worker's uncommitted rows"
    worker.commit()
    worker.close()
    t.join(10)
    out = result["out"]
    assert getattr(out, "cancelled", None) == 350
    assert statuses(session_factory, job_id) == {"ok": 150, "cancelled": 350}
    with session_factory() as s:
        job = get_job(session=s, job_id=job_id)
        assert (job.status, job.ok_count, job.error_count, job.cancelled_count) == (
            "cancelled", 150, 350, 350
        )  # fmt: skip


def test_only_the_cancel_writes_cancelled_rows(session_factory: sessionmaker[Session]) -> None:
    from textlstm.errors import ValidationError

    job_id = new_job(session_factory, 2)
    with session_factory.begin() as s, pytest.raises(ValidationError, match="bad status"):
        save_predictions(session=s, job_id=job_id, records=[PredictionRecord(0, "cancelled")])


def test_downgrade_turns_cancelled_rows_into_errors_and_upgrade_brings_the_status_back(
    empty_db_url: str,
) -> None:
    from sqlalchemy import inspect, text

    from textlstm.store import migrate
    from textlstm.store.db import make_engine, make_session_factory

    migrate.upgrade(empty_db_url)
    engine = make_engine(empty_db_url)
    try:
        factory = make_session_factory(engine)
        job_id = new_job(factory, 4, range(1))
        with factory.begin() as s:
            cancel_job(session=s, job_id=job_id)
        engine.dispose()
        migrate.downgrade(empty_db_url, "0002")
        with engine.connect() as conn:
            assert "cancelled_count" not in {c["name"] for c in inspect(conn).get_columns("jobs")}
            assert conn.execute(text("SELECT status FROM jobs")).scalar() == "partial"
            rows = conn.execute(text("SELECT status, count(*) FROM predictions GROUP BY status"))
            assert dict(rows.all()) == {"ok": 1, "error": 3}
            assert conn.execute(text("SELECT count(*) FROM prediction_results")).scalar() == 4
        engine.dispose()
        migrate.upgrade(empty_db_url)
        other = new_job(factory, 2)
        with factory.begin() as s:
            assert cancel_job(session=s, job_id=other).cancelled == 2
    finally:
        engine.dispose()


def test_recently_cancelled_job_ids_reads_only_cancels_within_the_window_newest_first(
    session_factory: sessionmaker[Session],
) -> None:
    """What amqp:// workers read every 500 ms instead of the Redis set: cancelled jobs only,
    those cancelled at or after `since`, newest first, at most `limit`."""
    from datetime import UTC, datetime, timedelta

    from textlstm.store.jobs import recently_cancelled_job_ids

    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    old, a, b = (new_job(session_factory, 10) for _ in range(3))
    running = new_job(session_factory, 10, range(0, 2))
    for job_id, at in ((old, t0 - timedelta(days=8)), (a, t0), (b, t0 + timedelta(seconds=1))):
        with session_factory.begin() as s:
            cancel_job(session=s, job_id=job_id, now=at)
    since = t0 - timedelta(days=7)
    with session_factory() as s:
        assert recently_cancelled_job_ids(session=s, since=since) == [str(b), str(a)]
        assert recently_cancelled_job_ids(session=s, since=since, limit=1) == [str(b)]
        assert str(running) not in recently_cancelled_job_ids(
            session=s, since=t0 - timedelta(days=30)
        )
