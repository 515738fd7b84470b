"""Jobs and predictions on real PostgreSQL and SQLite: idempotent saves and status moves."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.orm import Session, sessionmaker

from textlstm.errors import NotFoundError, ValidationError
from textlstm.store.jobs import add_jobs, ensure_job, get_job, list_jobs
from textlstm.store.predictions import JobItems, PredictionRecord, save_batch, save_predictions
from textlstm.store.results import iter_predictions


def ok(i: int, label: str = "pos", score: float = 0.9) -> PredictionRecord:
    return PredictionRecord(
        item_index=i,
        status="ok",
        label=label,
        score=score,
        probabilities={"pos": score, "neg": 1 - score},
        external_id=f"x{i}",
        latency_ms=1.5,
    )


def err(i: int) -> PredictionRecord:
    return PredictionRecord(item_index=i, status="error", error="text could not be tokenized")


def new_job(session: Session, expected: int = 4) -> uuid.UUID:
    job_id = uuid.uuid4()
    ensure_job(
        session=session,
        job_id=job_id,
        model_ref="m@production",
        expected=expected,
        metadata={"source": "test"},
    )
    return job_id


def test_ensure_job_is_idempotent_and_rejects_reuse(session: Session) -> None:
    job_id = uuid.uuid4()
    job, created = ensure_job(session=session, job_id=job_id, model_ref="m", expected=3)
    assert created and job.status == "queued" and job.expected_count == 3
    again, created = ensure_job(session=session, job_id=job_id, model_ref="m", expected=3)
    assert not created and again.id == job_id
    with pytest.raises(ValidationError, match="already used"):
        ensure_job(session=session, job_id=job_id, model_ref="m", expected=4)


def test_save_same_batch_twice_counts_once(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as s:
        job_id = new_job(s)
    batch = [ok(0), ok(1, "neg", 0.7)]
    with session_factory.begin() as s:
        first = save_predictions(session=s, job_id=job_id, records=batch)
    with session_factory.begin() as s:
        second = save_predictions(session=s, job_id=job_id, records=batch)
    assert (first.inserted, first.duplicates, first.status) == (2, 0, "running")
    assert (second.inserted, second.duplicates, second.ok_count) == (0, 2, 2)
    with session_factory() as s:
        job = get_job(session=s, job_id=job_id)
        assert (job.ok_count, job.error_count, job.status) == (2, 0, "running")
        assert job.started_at is not None and job.started_at.tzinfo is not None
        assert job.finished_at is None
        rows = list(iter_predictions(session=s, job_id=job_id))
        assert [r.item_index for r in rows] == [0, 1]
        assert rows[1].probabilities == {"pos": 0.7, "neg": pytest.approx(0.3)}


@pytest.mark.parametrize(
    ("records", "status"),
    [
        ([ok(0), ok(1), ok(2)], "done"),
        ([ok(0), err(1), ok(2)], "partial"),
        ([err(0), err(1), err(2)], "failed"),
    ],
)
def test_final_status(session: Session, records: list[PredictionRecord], status: str) -> None:
    job_id = new_job(session, expected=3)
    out = save_predictions(session=session, job_id=job_id, records=records[:1])
    assert out.status == "running"
    out = save_predictions(session=session, job_id=job_id, records=records)
    assert (out.inserted, out.duplicates, out.status) == (2, 1, status)
    job = get_job(session=session, job_id=job_id)
    assert job.status == status and job.finished_at is not None
    assert job.ok_count + job.error_count == 3


def test_overlapping_batches_never_pass_total(session: Session) -> None:
    job_id = new_job(session, expected=3)
    save_predictions(session=session, job_id=job_id, records=[ok(0), ok(1)])
    out = save_predictions(session=session, job_id=job_id, records=[ok(1), ok(2), ok(0)])
    assert (out.inserted, out.ok_count, out.status) == (1, 3, "done")


def test_bad_records_are_refused_before_writing(session: Session) -> None:
    job_id = new_job(session, expected=2)
    with pytest.raises(ValidationError, match="outside"):
        save_predictions(session=session, job_id=job_id, records=[ok(0), ok(2)])
    with pytest.raises(ValidationError, match="repeated"):
        save_predictions(session=session, job_id=job_id, records=[ok(0), ok(0)])
    with pytest.raises(ValidationError, match="needs a label"):
        save_predictions(session=session, job_id=job_id, records=[PredictionRecord(0, "ok")])
    assert list(iter_predictions(session=session, job_id=job_id)) == []
    with pytest.raises(NotFoundError):
        save_predictions(session=session, job_id=uuid.uuid4(), records=[ok(0)])


def test_model_version_recorded_on_job(session: Session, fake_bundle) -> None:
    from textlstm.store.registry import register_bundle

    mv, _ = register_bundle(session=session, path=fake_bundle, name="m")
    job_id = new_job(session, expected=1)
    save_predictions(session=session, job_id=job_id, records=[ok(0)], model_version_id=mv.id)
    assert get_job(session=session, job_id=job_id).model_version_id == mv.id


def test_list_jobs_filters_and_limits(session: Session) -> None:
    ids = [new_job(session, expected=1) for _ in range(3)]
    save_predictions(session=session, job_id=ids[0], records=[ok(0)])
    assert {j.id for j in list_jobs(session=session, status="queued")} == set(ids[1:])
    assert [j.id for j in list_jobs(session=session, status="done")] == [ids[0]]
    assert len(list_jobs(session=session, limit=2)) == 2
    with pytest.raises(ValidationError, match="unknown job status"):
        list_jobs(session=session, status="nope")


def test_iter_predictions_pages(session: Session) -> None:
    job_id = new_job(session, expected=25)
    save_predictions(session=session, job_id=job_id, records=[ok(i) for i in range(25)][::-1])
    got = [p.item_index for p in iter_predictions(session=session, job_id=job_id, page_size=7)]
    assert got == list(range(25))


def test_analyst_view(session: Session) -> None:
    from sqlalchemy import text

    job_id = new_job(session, expected=2)
    save_predictions(session=session, job_id=job_id, records=[ok(0), err(1)])
    session.flush()
    rows = session.execute(
        text(
            "SELECT item_index, status, label, job_status FROM prediction_results "
            "ORDER BY item_index"
        )
    ).all()
    assert [tuple(r) for r in rows] == [(0, "ok", "pos", "partial"), (1, "error", None, "partial")]


def test_save_batch_stores_many_jobs_and_advances_each_one(
    session_factory: sessionmaker[Session],
) -> None:
    known, taken = uuid.uuid4(), uuid.uuid4()
    with session_factory.begin() as s:
        ensure_job(session=s, job_id=known, model_ref="m", expected=2)
        save_predictions(session=s, job_id=known, records=[ok(0)])
        ensure_job(session=s, job_id=taken, model_ref="m", expected=9)
    singles = [uuid.uuid4() for _ in range(5)]
    batch = {
        **{j: JobItems("m", 1, [ok(0)], {"n": i}) for i, j in enumerate(singles)},
        known: JobItems("m", 2, [ok(0), err(1)]),  # item 0 is a redelivery
        taken: JobItems("m", 3, [ok(0)]),  # the id belongs to a job of 9 items
    }
    with session_factory.begin() as s:
        out = save_batch(session=s, jobs=batch, model_version_id=None)
    assert (out.inserted, out.duplicates) == (6, 1)
    assert list(out.skipped) == [taken] and "already used by a job of 9 items" in out.skipped[taken]
    with session_factory() as s:
        for i, j in enumerate(singles):
            job = get_job(session=s, job_id=j)
            assert (job.status, job.ok_count, job.expected_count, job.meta) == (
                "done",
                1,
                1,
                {"n": i},
            )
            assert job.finished_at is not None
        job = get_job(session=s, job_id=known)
        assert (job.status, job.ok_count, job.error_count) == ("partial", 1, 1)
        first, second = iter_predictions(session=s, job_id=known)
        assert (second.status, second.error, second.label, second.probabilities) == (
            "error", "text could not be tokenized", None, None
        )  # fmt: skip
        (row,) = iter_predictions(session=s, job_id=singles[0])
        assert (row.label, row.score, row.external_id, row.latency_ms) == ("pos", 0.9, "x0", 1.5)
        assert row.probabilities == {"pos": 0.9, "neg": pytest.approx(0.1)}  # JSON, not a string
        assert row.created_at.tzinfo is not None
        job = get_job(session=s, job_id=taken)
        assert (job.status, job.ok_count, job.expected_count) == ("queued", 0, 9)
        assert not list(iter_predictions(session=s, job_id=taken))
    with session_factory.begin() as s:  # the same batch again: nothing new, counters unchanged
        again = save_batch(session=s, jobs=batch)
    assert (again.inserted, again.duplicates) == (0, 7)
    with session_factory() as s:
        assert get_job(session=s, job_id=known).ok_count == 1


def test_save_batch_refuses_bad_records_before_writing(session: Session) -> None:
    good, bad = uuid.uuid4(), uuid.uuid4()
    batch = {good: JobItems("m", 1, [ok(0)]), bad: JobItems("m", 2, [ok(5)])}
    with pytest.raises(ValidationError, match="outside 0..1"):
        save_batch(session=session, jobs=batch)


def test_add_jobs_creates_queued_rows_and_counts_only_new_ones(
    session_factory: sessionmaker[Session],
) -> None:
    ids = [uuid.uuid4() for _ in range(5)]

    def rows(which: list[uuid.UUID]) -> list[dict[str, object]]:
        return [{"job_id": j, "model_ref": "m", "expected": 1} for j in which]

    with session_factory.begin() as s:
        assert add_jobs(session=s, jobs=rows(ids[:3])) == 3
    with session_factory.begin() as s:  # a retried flush: the first three are there already
        assert add_jobs(session=s, jobs=rows(ids)) == 2
    with session_factory() as s:
        assert {get_job(session=s, job_id=j).status for j in ids} == {"queued"}


def test_postgresql_connections_send_lists_in_binary(pg_database_url: str) -> None:
    """The worker's id and count arrays are packed by psycopg's binary list dumper (its text
    one quotes each element in Python), and they still arrive as the right arrays."""
    from psycopg.adapt import PyFormat
    from psycopg.types.array import ListBinaryDumper

    from textlstm.store.db import make_engine

    engine = make_engine(pg_database_url)
    try:
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            assert raw.adapters.get_dumper(list, PyFormat.AUTO) is ListBinaryDumper
            ids = [uuid.uuid4(), uuid.uuid4()]
            got = conn.exec_driver_sql(
                "SELECT CAST(%(ids)s AS uuid[]), CAST(%(n)s AS integer[])",
                {"ids": ids, "n": [1, 2]},
            ).one()
            assert (list(got[0]), list(got[1])) == (ids, [1, 2])
    finally:
        engine.dispose()
