"""The read queries that moved into store/ from ops/recovery.py and bench/ (issue 15): stuck
jobs, missing items, row counts, per-item latency pairs, unfinished jobs, and the tutorial
baseline's one-row insert. On real PostgreSQL and SQLite."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from textlstm.store.jobs import ensure_job, get_job, stuck_jobs, unfinished_jobs
from textlstm.store.predictions import PredictionRecord, add_prediction, save_predictions
from textlstm.store.results import count_predictions, missing_indexes, stored_since


def ok(i: int) -> PredictionRecord:
    return PredictionRecord(item_index=i, status="ok", label="pos", score=0.9)


def test_missing_indexes_and_counts(session_factory: sessionmaker[Session]) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    with session_factory.begin() as s:
        ensure_job(session=s, job_id=a, model_ref="m", expected=5)
        ensure_job(session=s, job_id=b, model_ref="m", expected=2)
        save_predictions(session=s, job_id=a, records=[ok(0), ok(3)])
        save_predictions(session=s, job_id=b, records=[ok(1)])
    with session_factory() as s:
        assert missing_indexes(session=s, job=get_job(session=s, job_id=a)) == [1, 2, 4]
        assert missing_indexes(session=s, job=get_job(session=s, job_id=b)) == [0]
        assert count_predictions(session=s) == 3
        assert count_predictions(session=s, job_id=a) == 2
        assert count_predictions(session=s, job_id=uuid.uuid4()) == 0


def test_stuck_jobs_are_those_without_recent_progress(
    session_factory: sessionmaker[Session],
) -> None:
    now = datetime.now(UTC)
    idle, busy, finished = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    long_ago = now - timedelta(hours=2)
    with session_factory.begin() as s:
        for job in (idle, busy, finished):
            ensure_job(session=s, job_id=job, model_ref="m", expected=2, submitted_at=long_ago)
        save_predictions(session=s, job_id=busy, records=[ok(0)])  # stored just now
        save_predictions(session=s, job_id=finished, records=[ok(0), ok(1)])
    with session_factory() as s:
        found = stuck_jobs(session=s, older_than=timedelta(hours=1), now=now)
        assert [j.job_id for j in found] == [idle]
        assert (found[0].status, found[0].done, found[0].expected) == ("queued", 0, 2)
        assert found[0].last_activity == long_ago
        # Progress counts as activity: with a cutoff after the row was stored, `busy` is stuck.
        later = stuck_jobs(session=s, older_than=timedelta(0), now=now + timedelta(minutes=1))
        assert {j.job_id for j in later} == {idle, busy}


def test_unfinished_jobs_and_stored_since(session_factory: sessionmaker[Session]) -> None:
    done, running = uuid.uuid4(), uuid.uuid4()
    submitted = datetime.now(UTC) - timedelta(seconds=5)
    with session_factory.begin() as s:
        ensure_job(session=s, job_id=done, model_ref="m", expected=1, submitted_at=submitted)
        ensure_job(session=s, job_id=running, model_ref="m", expected=2, submitted_at=submitted)
        save_predictions(session=s, job_id=done, records=[ok(0)])
        save_predictions(session=s, job_id=running, records=[ok(0)])
    with session_factory() as s:
        assert unfinished_jobs(session=s) == [running]
        pairs = stored_since(session=s, since=submitted)
        assert len(pairs) == 2
        for created, sub in pairs:
            assert sub.replace(tzinfo=sub.tzinfo or UTC) == submitted
            assert created.replace(tzinfo=created.tzinfo or UTC) >= submitted
        assert stored_since(session=s, since=datetime.now(UTC) + timedelta(hours=1)) == []


def test_add_prediction_writes_one_row_and_leaves_the_counters(
    session_factory: sessionmaker[Session],
) -> None:
    job = uuid.uuid4()
    with session_factory.begin() as s:
        ensure_job(session=s, job_id=job, model_ref="m", expected=2)
    with session_factory() as s:
        add_prediction(session=s, job_id=job, record=ok(1))
        s.commit()
    with session_factory() as s:
        assert missing_indexes(session=s, job=get_job(session=s, job_id=job)) == [0]
        assert get_job(session=s, job_id=job).ok_count == 0  # the tutorial keeps no counters
