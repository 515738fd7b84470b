"""Retention on real PostgreSQL and SQLite: `purge` deletes old finished jobs with their rows,
in bounded transactions, and never a queued or running one (issue 18, deliverable 4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.retention import job_exists, rows_of, stored_job, total_rows
from textlstm.errors import ValidationError
from textlstm.ops.retention import parse_cutoff, parse_statuses, purge
from textlstm.store.models import FINISHED_STATUSES, Job
from textlstm.store.retention import delete_job_rows, delete_jobs, purge_totals

DAY = timedelta(days=1)


def cutoff(days: float = 30) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


def test_purges_old_finished_jobs_and_nothing_else(session_factory: sessionmaker[Session]) -> None:
    f = session_factory
    old_done = stored_job(f, expected=5, age=40 * DAY)
    old_partial = stored_job(f, expected=4, errors=1, age=40 * DAY)
    old_failed = stored_job(f, expected=2, errors=2, age=31 * DAY)
    recent_done = stored_job(f, expected=3, age=29 * DAY)
    # Submitted long ago and still waiting for items: old, but not finished.
    old_running = stored_job(f, expected=6, stored=2, age=90 * DAY)
    old_queued = stored_job(f, expected=6, stored=0, age=90 * DAY)

    report = purge(session_factory=f, cutoff=cutoff(30))

    assert (report.jobs, report.predictions, report.skipped) == (3, 11, 0)
    for gone in (old_done, old_partial, old_failed):
        assert not job_exists(f, gone) and rows_of(f, gone) == 0
    for kept, rows in ((recent_done, 3), (old_running, 2), (old_queued, 0)):
        assert job_exists(f, kept) and rows_of(f, kept) == rows
    assert total_rows(f) == 5
    assert "purged 3 job(s) and 11 prediction(s)" in report.line()
    again = purge(session_factory=f, cutoff=cutoff(30))
    assert (again.jobs, again.predictions) == (0, 0)


def test_status_filter_and_dry_run(session_factory: sessionmaker[Session]) -> None:
    f = session_factory
    done = stored_job(f, expected=3, age=40 * DAY)
    partial = stored_job(f, expected=4, errors=1, age=40 * DAY)

    dry = purge(session_factory=f, cutoff=cutoff(), statuses=("done", "partial"), dry_run=True)
    assert (dry.jobs, dry.predictions, dry.transactions) == (2, 7, 0)
    assert dry.line().startswith("would purge 2 job(s) and 7 prediction(s)")
    assert job_exists(f, done) and rows_of(f, partial) == 4

    report = purge(session_factory=f, cutoff=cutoff(), statuses=parse_statuses("partial"))
    assert (report.jobs, report.predictions) == (1, 4)
    assert job_exists(f, done) and not job_exists(f, partial)


def test_big_jobs_and_many_small_ones_go_in_bounded_transactions(
    session_factory: sessionmaker[Session],
) -> None:
    f = session_factory
    big = stored_job(f, expected=95, age=40 * DAY)
    small = [stored_job(f, expected=3, age=35 * DAY) for _ in range(12)]

    report = purge(session_factory=f, cutoff=cutoff(), batch_rows=10)

    assert (report.jobs, report.predictions) == (13, 95 + 36)
    # The big job: 10 ranges of 10 item indexes, then its row; the small ones 3 per transaction.
    assert report.transactions == 10 + 1 + 4
    assert not job_exists(f, big) and not any(job_exists(f, j) for j in small)
    assert total_rows(f) == 0


def test_jobs_finished_at_the_same_instant_are_all_purged(
    session_factory: sessionmaker[Session],
) -> None:
    """The keyset (finished_at, id) must not skip ties between batches."""
    f = session_factory
    jobs = [stored_job(f, expected=1) for _ in range(7)]
    same = datetime.now(UTC) - 40 * DAY
    with f.begin() as s:
        s.execute(update(Job).where(Job.id.in_(jobs)).values(finished_at=same))
    import textlstm.ops.retention as retention

    scan, retention.SCAN_JOBS = retention.SCAN_JOBS, 3
    try:
        report = purge(session_factory=f, cutoff=cutoff(), batch_rows=2)
    finally:
        retention.SCAN_JOBS = scan
    assert report.jobs == 7 and total_rows(f) == 0


def test_a_final_job_without_finished_at_is_aged_by_submission(
    session_factory: sessionmaker[Session],
) -> None:
    f = session_factory
    old = stored_job(f, expected=2, age=40 * DAY)
    recent = stored_job(f, expected=2, age=2 * DAY)
    with f.begin() as s:
        s.execute(update(Job).where(Job.id.in_([old, recent])).values(finished_at=None))
    report = purge(session_factory=f, cutoff=cutoff())
    assert (report.jobs, report.predictions) == (1, 2)
    assert not job_exists(f, old) and job_exists(f, recent)


def test_every_delete_rechecks_final_and_old(session_factory: sessionmaker[Session]) -> None:
    """The ids a purge read earlier are not trusted: a job that is running, or finished after
    the cutoff, by the time the DELETE runs is left alone."""
    f = session_factory
    running = stored_job(f, expected=20, stored=15, age=90 * DAY)
    recent = stored_job(f, expected=3, age=DAY)
    old = stored_job(f, expected=3, age=40 * DAY)
    statuses, before = FINISHED_STATUSES, cutoff()
    with f.begin() as s:
        assert delete_jobs(session=s, job_ids=[running, recent, old], statuses=statuses,
                           cutoff=before) == (1, 3)  # fmt: skip
        assert delete_job_rows(session=s, job_id=running, start=0, stop=20, statuses=statuses,
                               cutoff=before) is None  # fmt: skip
        assert purge_totals(session=s, statuses=statuses, cutoff=before) == (0, 0)
    assert rows_of(f, running) == 15 and rows_of(f, recent) == 3 and not job_exists(f, old)


def test_stop_between_transactions_leaves_whole_jobs(
    session_factory: sessionmaker[Session],
) -> None:
    f = session_factory
    jobs = [stored_job(f, expected=2, age=40 * DAY) for _ in range(5)]
    calls = iter(range(100))
    report = purge(
        session_factory=f, cutoff=cutoff(), batch_rows=2, should_stop=lambda: next(calls) >= 2
    )
    assert report.stopped and report.jobs == 2 and "stopped before the end" in report.line()
    assert sum(job_exists(f, j) for j in jobs) == 3 and total_rows(f) == 6


def test_statuses_and_cutoffs_are_parsed_strictly() -> None:
    assert parse_statuses(None) == FINISHED_STATUSES
    assert parse_statuses(" done, partial,done ") == ("done", "partial")
    for bad in ("running", "queued", "done,runing"):
        with pytest.raises(ValidationError, match="only finished jobs are purged"):
            parse_statuses(bad)
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    assert parse_cutoff("30d", now=now) == now - timedelta(days=30)
    assert parse_cutoff("12h", now=now) == now - timedelta(hours=12)
    assert parse_cutoff("90m", now=now) == now - timedelta(minutes=90)
    assert parse_cutoff("2026-11-01", now=now) == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_cutoff("2026-11-01T12:00+01:00", now=now) == datetime(2026, 11, 1, 11, tzinfo=UTC)
    for bad, why in (("soon", "neither a duration"), ("30", "neither a duration"),
                     ("2027-01-01", "in the future")):  # fmt: skip
        with pytest.raises(ValidationError, match=why):
            parse_cutoff(bad, now=now)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # its own file: a table may be added
def test_rows_of_other_tables_that_refer_to_a_job_go_with_it(
    session_factory: sessionmaker[Session],
) -> None:
    """A table added later with a key to jobs (webhook deliveries, say) does not make the
    purge fail on its foreign key: its rows are deleted with their job."""
    from sqlalchemy import Column, ForeignKey, Integer, Table, Uuid, func, insert, select

    from textlstm.store.models import Base
    from textlstm.store.retention import job_dependents

    refs = Table(
        "purge_test_refs",
        Base.metadata,
        Column("id", Integer, primary_key=True),
        Column("job_id", Uuid, ForeignKey("jobs.id"), nullable=False),
    )
    try:
        names = sorted(c.table.name for c in job_dependents())
        assert names == ["purge_test_refs", "webhook_deliveries"]
        f = session_factory
        refs.create(f.kw["bind"])
        old = stored_job(f, expected=2, age=40 * DAY)
        recent = stored_job(f, expected=2, age=DAY)
        with f.begin() as s:
            s.execute(insert(refs), [{"job_id": old}, {"job_id": old}, {"job_id": recent}])
        report = purge(session_factory=f, cutoff=cutoff())
        assert (report.jobs, report.predictions) == (1, 2)
        with f() as s:
            assert s.scalar(select(func.count()).select_from(refs)) == 1
    finally:
        Base.metadata.remove(refs)
    assert [c.table.name for c in job_dependents()] == ["webhook_deliveries"]
