"""One final event per job (store/events.py): claimed by the write that makes the job final,
never by a second writer or a redelivered batch, and a webhook delivery with it."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from textlstm.store.events import (
    claim_due,
    claim_final,
    delivery_counts,
    get_delivery,
    record_attempt,
)
from textlstm.store.jobs import ensure_job, get_job
from textlstm.store.models import Job
from textlstm.store.predictions import JobItems, PredictionRecord, save_batch, save_predictions

PG = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


def items(job_total: int, *indexes: int, webhook: str | None = None) -> JobItems:
    return JobItems("m", job_total, [PredictionRecord(i, "ok", "pos") for i in indexes],
                    webhook_url=webhook)  # fmt: skip


def events(session_factory: sessionmaker[Session]) -> int:
    """Jobs whose final event was claimed (the token of the write that finished them)."""
    with session_factory() as s:
        return s.scalar(select(func.count()).where(Job.finished_by.is_not(None))) or 0


def test_the_batch_that_finishes_a_job_records_its_event_once(
    session_factory: sessionmaker[Session],
) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    with session_factory.begin() as s:
        first = save_batch(session=s, jobs={a: items(2, 0), b: items(1, 0, webhook="https://h/x")})
    assert [(f.job_id, f.status, f.webhook) for f in first.finished] == [(b, "done", True)]
    with session_factory.begin() as s:
        second = save_batch(session=s, jobs={a: items(2, 0, 1)})  # item 0 redelivered
    assert [(f.job_id, f.status, f.webhook) for f in second.finished] == [(a, "done", False)]
    with session_factory.begin() as s:  # the whole job redelivered: nothing new, no event
        assert save_batch(session=s, jobs={a: items(2, 0, 1)}).finished == ()
        assert claim_final(session=s, job_ids=[a, b]) == []  # e.g. a cancel racing it
    assert events(session_factory) == 2
    with session_factory() as s:
        assert get_delivery(session=s, job_id=a) is None
        d = get_delivery(session=s, job_id=b)
        assert d is not None and (d.url, d.state, d.attempts) == ("https://h/x", "pending", 0)


def test_another_path_claims_the_event_once(session_factory: sessionmaker[Session]) -> None:
    """A path that ends a job by its own SQL (as a cancel would) claims the event with
    claim_final; a second claim, or the save path afterwards, gets nothing."""
    from sqlalchemy import update

    jid = uuid.uuid4()
    with session_factory.begin() as s:
        ensure_job(session=s, job_id=jid, model_ref="m", expected=3, webhook_url="http://h/")
        s.execute(update(Job).where(Job.id == jid).values(status="failed"))
        first = claim_final(session=s, job_ids=[jid, uuid.uuid4()])
        assert [(f.job_id, f.status, f.webhook) for f in first] == [(jid, "failed", True)]
        assert claim_final(session=s, job_ids=[jid]) == []
    with session_factory() as s:
        assert get_delivery(session=s, job_id=jid).state == "pending"


def test_save_predictions_records_the_event_with_a_failed_job(
    session_factory: sessionmaker[Session],
) -> None:
    jid = uuid.uuid4()
    with session_factory.begin() as s:
        ensure_job(session=s, job_id=jid, model_ref="m", expected=1, webhook_url="http://h/")
        out = save_predictions(
            session=s, job_id=jid, records=[PredictionRecord(0, "error", error="bad")]
        )
    assert [(f.status, f.webhook) for f in out.finished] == [("failed", True)]


@PG
def test_two_writers_finishing_a_job_at_once_record_one_event(
    session_factory: sessionmaker[Session],
) -> None:
    """Forced interleaving on PostgreSQL: writer A stores item 0 and holds its transaction open;
    writer B stores item 1 meanwhile (it waits on the job row's lock), then A commits. Whoever
    ends the job records the event; the other records none."""
    jid = uuid.uuid4()
    with session_factory.begin() as s:
        ensure_job(session=s, job_id=jid, model_ref="m", expected=2)
    out: dict[str, tuple] = {}
    a = session_factory()
    a.begin()
    out["a"] = save_batch(session=a, jobs={jid: items(2, 0)}).finished

    def writer_b() -> None:
        with session_factory.begin() as b:
            out["b"] = save_batch(session=b, jobs={jid: items(2, 1)}).finished

    t = threading.Thread(target=writer_b)
    t.start()
    time.sleep(0.5)  # B is now blocked on the job row A updated
    assert "b" not in out
    a.commit()
    a.close()
    t.join(30)
    assert out["a"] == () and [f.status for f in out["b"]] == ["done"]
    assert events(session_factory) == 1


def test_racing_writers_record_exactly_one_event_per_job(
    session_factory: sessionmaker[Session],
) -> None:
    """40 jobs of 2 items; for each job two threads store one item each, released together by a
    barrier, each in its own transaction and connection (PostgreSQL and SQLite)."""
    jobs = [uuid.uuid4() for _ in range(40)]
    finished: list[uuid.UUID] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def work(i: int) -> None:
        try:
            for jid in jobs:
                barrier.wait(10)
                with session_factory.begin() as s:
                    out = save_batch(session=s, jobs={jid: items(2, i)})
                finished.extend(f.job_id for f in out.finished)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert sorted(finished, key=str) == sorted(jobs, key=str)  # each job once, none twice
    assert events(session_factory) == len(jobs)
    with session_factory() as s:
        assert all(get_job(session=s, job_id=j).status == "done" for j in jobs)


def test_claim_and_record_attempts(session_factory: sessionmaker[Session]) -> None:
    jid = uuid.uuid4()
    with session_factory.begin() as s:
        save_batch(session=s, jobs={jid: items(1, 0, webhook="https://h/x")})
    now = datetime.now(UTC)
    lease = timedelta(seconds=30)
    with session_factory.begin() as s:
        (claim,) = claim_due(session=s, now=now, lease=lease, limit=10)
        assert (claim.job_id, claim.attempt, claim.payload["status"]) == (jid, 1, "done")
        assert claim.payload["ok"] == 1 and claim.payload["job_id"] == str(jid)
    with session_factory.begin() as s:  # leased: not claimed again meanwhile
        assert claim_due(session=s, now=now, lease=lease, limit=10) == []
    with session_factory.begin() as s:  # the lease ran out (the sender died): claimed again
        (again,) = claim_due(session=s, now=now + lease * 2, lease=lease, limit=10)
        assert again.attempt == 2
        record_attempt(session=s, job_id=jid, now=now, status_code=503, error="HTTP 503",
                       delivered=False, retry_at=now + lease * 3)  # fmt: skip
    with session_factory.begin() as s:
        (third,) = claim_due(session=s, now=now + lease * 3, lease=lease, limit=10)
        record_attempt(session=s, job_id=jid, now=now, status_code=200, error=None,
                       delivered=True, retry_at=None)  # fmt: skip
    with session_factory() as s:
        d = get_delivery(session=s, job_id=jid)
        assert d is not None and (d.state, d.attempts, d.last_status_code) == ("delivered", 3, 200)
        assert d.delivered_at is not None and d.last_error is None
        assert delivery_counts(session=s) == {"pending": 0, "delivered": 1, "failed": 0}


def test_a_cancel_claims_the_final_event_once(session_factory: sessionmaker[Session]) -> None:
    from textlstm.store.jobs import cancel_job

    jid = uuid.uuid4()
    with session_factory.begin() as s:
        ensure_job(session=s, job_id=jid, model_ref="m", expected=3, webhook_url="http://h/")
        save_batch(session=s, jobs={jid: items(3, 0)})
    with session_factory.begin() as s:
        first = cancel_job(session=s, job_id=jid)
    assert [(f.job_id, f.status, f.webhook) for f in first.finished] == [(jid, "cancelled", True)]
    with session_factory.begin() as s:
        assert cancel_job(session=s, job_id=jid).finished == ()  # idempotent: no second event
        # a late batch of the job's items stores nothing and claims nothing
        assert save_batch(session=s, jobs={jid: items(3, 1, 2)}).finished == ()
    assert events(session_factory) == 1
    with session_factory() as s:
        assert get_delivery(session=s, job_id=jid).state == "pending"


def test_a_purged_job_takes_its_webhook_delivery_with_it(
    session_factory: sessionmaker[Session],
) -> None:
    from textlstm.ops.retention import purge

    jid = uuid.uuid4()
    with session_factory.begin() as s:
        save_batch(session=s, jobs={jid: items(1, 0, webhook="https://h/x")})
    report = purge(session_factory=session_factory, cutoff=datetime.now(UTC) + timedelta(seconds=5))
    assert (report.jobs, report.predictions) == (1, 1)
    with session_factory() as s:
        assert get_delivery(session=s, job_id=jid) is None
