"""Batch isolation (issue 14, part 3): one job's conflict or storage error fails that job's
items alone, with the reason, and the rest of the micro-batch is stored in the same
`classify_batch` call.

Real PostgreSQL and SQLite (`db_url` is parametrised over both) and a real tiny model.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.serving import FAST, batch_of, message, rows
from textlstm.serving import service
from textlstm.serving.models import ModelCache
from textlstm.serving.service import BatchReport, ItemOutcome, classify_batch
from textlstm.store.jobs import add_jobs, ensure_job, get_job
from textlstm.store.predictions import BatchOutcome, save_batch
from textlstm.wire.messages import ClassifyMessage, Item


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """Every SQL statement the engine's connections send while inside the block."""
    seen: list[str] = []

    def record(conn: object, cursor: object, sql: str, *args: object) -> None:
        seen.append(sql)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def savepoints(sent: list[str]) -> int:
    return sum(s.upper().startswith("SAVEPOINT") for s in sent)


def run(cache: ModelCache, factory: sessionmaker[Session], *msgs: ClassifyMessage) -> BatchReport:
    return classify_batch(batch_of(*msgs), models=cache, session_factory=factory, retry=FAST)


def job_of(factory: sessionmaker[Session], job: uuid.UUID) -> tuple[str, int, int, int] | None:
    with factory() as s:
        try:
            j = get_job(session=s, job_id=job)
        except Exception:  # noqa: BLE001 - NotFoundError
            return None
        return (j.status, j.expected_count, j.ok_count, j.error_count)


def assert_done(factory: sessionmaker[Session], *msgs: ClassifyMessage) -> None:
    for m in msgs:
        assert job_of(factory, m.job_id) == ("done", m.total, m.total, 0)
        assert [r.status for r in rows(factory, m.job_id)] == ["ok"] * m.total


def test_happy_path_sends_as_many_statements_as_before(
    registered: dict,  # noqa: F811
    models: ModelCache,  # noqa: F811
    session_factory: sessionmaker[Session],
    engine: Engine,
) -> None:
    """The fast path is untouched: no SAVEPOINT, and per dialect the statement count measured
    on the code before isolation existed (new jobs: [BEGIN IMMEDIATE on SQLite,] read, create,
    read back, predictions, counters; jobs the producer recorded: read, predictions, counters).
    The final events cost no statement on PostgreSQL (the counters' UPDATE … RETURNING says
    which jobs this write finished); SQLite reads them back, one statement more (issue 18).
    """
    models.get("topics")  # resolved before counting: the cache's queries are not the write's
    extra = 0 if engine.dialect.name == "postgresql" else 2
    new = [message(["goal match", "stock bank"]), message(["physics lab"])]
    with statements(engine) as sent:
        report = run(models, session_factory, *new)
    assert (report.inserted, report.db_attempts, report.unstored) == (3, 1, ())
    assert (len(sent), savepoints(sent)) == (5 + extra, 0)
    recorded = [message(["cup final"]), message(["bond rates", "quantum cells"])]
    with session_factory.begin() as s:
        add_jobs(
            session=s,
            jobs=[
                {"job_id": m.job_id, "model_ref": m.model, "expected": m.total} for m in recorded
            ],
        )
    with statements(engine) as sent:
        run(models, session_factory, *recorded)
    assert (len(sent), savepoints(sent)) == (3 + extra, 0)
    assert_done(session_factory, *new, *recorded)


def test_two_messages_of_one_new_job_with_other_totals_fail_only_the_second(
    registered: dict,  # noqa: F811
    models: ModelCache,  # noqa: F811
    session_factory: sessionmaker[Session],
    engine: Engine,
) -> None:
    """Totals 3 and 5 for one new job id: the first message makes the job and is stored, the
    second (indices 3 and 4 would not even fit) is reported; the neighbours are stored, all
    in one write with no isolation needed."""
    models.get("topics")
    job = uuid.uuid4()
    first = message(["goal match", "stock bank", "physics lab"], job=job)
    second = message(["cup final", "bond rates"], total=5, start=3, job=job)
    before, after = message(["team coach"]), message(["space telescope", "shares profit"])
    with statements(engine) as sent:
        report = run(models, session_factory, before, first, second, after)
    assert (report.db_attempts, report.inserted, savepoints(sent)) == (1, 6, 0)
    assert_done(session_factory, before, first, after)
    why = (
        f"job id {job} is already used by a job of 3 items for model 'topics' "
        "(this message: 5 items for 'topics')"
    )
    assert report.unstored == ((job, why, 5, "topics"),)
    assert (report.unstored_reason(second), report.unstored_reason(first)) == (why, None)
    assert (report.ok, report.errors, report.skipped_jobs) == (6, 2, ())


def test_the_message_that_matches_the_recorded_job_wins_even_when_second(
    registered: dict,  # noqa: F811
    models: ModelCache,  # noqa: F811
    session_factory: sessionmaker[Session],
) -> None:
    job = uuid.uuid4()
    with session_factory.begin() as s:
        ensure_job(session=s, job_id=job, model_ref="topics", expected=5)
    wrong = message(["goal match", "stock bank", "physics lab"], job=job)  # total 3
    right = message(["cup final", "bond rates"], total=5, start=3, job=job)
    neighbour = message(["team coach"])
    report = run(models, session_factory, wrong, neighbour, right)
    assert [r.item_index for r in rows(session_factory, job)] == [3, 4]
    assert job_of(session_factory, job) == ("running", 5, 2, 0)
    assert_done(session_factory, neighbour)
    assert report.unstored_reason(right) is None
    assert "(this message: 3 items for 'topics')" in (report.unstored_reason(wrong) or "")


def deep(levels: int) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for _ in range(levels):
        doc = {"a": doc}
    return doc


def bad_message(kind: str) -> ClassifyMessage:
    """A message that bypasses validation (built directly) with a value storage refuses."""
    items = (Item(0, "goal match", "id-0"),)
    if kind == "deep-metadata":  # RecursionError while serialising it, on both databases
        return ClassifyMessage(uuid.uuid4(), "topics", 1, items, metadata=deep(2000))
    assert kind == "huge-total"  # PostgreSQL: integer out of range; SQLite: OverflowError
    return ClassifyMessage(uuid.uuid4(), "topics", 2**63, items)


@pytest.mark.parametrize("kind", ["deep-metadata", "huge-total"])
def test_a_job_the_database_refuses_fails_alone_and_the_rest_is_stored(
    registered: dict,  # noqa: F811
    models: ModelCache,  # noqa: F811
    session_factory: sessionmaker[Session],
    engine: Engine,
    kind: str,
) -> None:
    """Its job row cannot be made, so it gets no row at all and is reported (unstored), with
    the database's (or driver's) reason; the seven valid jobs are committed in the same call.
    Eight jobs, one bad: the bisection takes 2·log2(8) = 6 savepoint attempts, plus 1 for the
    bad job's error rows."""
    models.get("topics")
    bad = bad_message(kind)
    good = [message([f"goal stock {i}", "physics lab"]) for i in range(7)]
    with statements(engine) as sent:
        report = run(models, session_factory, *good[:3], bad, *good[3:])
    assert report.db_attempts == 1
    assert_done(session_factory, *good)
    assert job_of(session_factory, bad.job_id) is None
    ((jid, why, total, model),) = report.unstored
    assert (jid, total, model) == (bad.job_id, bad.total, "topics")
    expected = {
        "deep-metadata": "RecursionError",
        "huge-total": "integer out of range"
        if engine.dialect.name == "postgresql"
        else "OverflowError",
    }[kind]
    assert why.startswith("could not store: ") and expected in why
    assert report.unstored_reason(bad) == why
    assert (report.inserted, report.ok, report.errors) == (14, 14, 1)
    assert savepoints(sent) == 7


def test_items_the_database_refuses_become_error_rows_with_the_reason(
    registered: dict,  # noqa: F811
    models: ModelCache,  # noqa: F811
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The job row can be made but its predictions cannot (probabilities that are not JSON):
    the job ends `failed` with one error row per item, saying why; its neighbours are stored.
    """
    real: Callable[..., list[ItemOutcome]] = service.predict_isolated

    def poisoned(classifier: Any, texts: list[str], **kw: Any) -> list[ItemOutcome]:
        out = real(classifier, texts, **kw)
        return [
            ItemOutcome(o.label, o.score, {("not", "a", "key"): 1.0}) if "poison" in t else o
            for t, o in zip(texts, out, strict=True)
        ]

    monkeypatch.setattr(service, "predict_isolated", poisoned)
    bad = message(["goal poison", "stock poison"])
    good = [message(["goal match"]), message(["stock bank", "physics lab"]), message(["cup"])]
    report = run(models, session_factory, good[0], bad, *good[1:])
    assert (report.db_attempts, report.unstored, report.inserted) == (1, (), 6)
    assert_done(session_factory, *good)
    assert job_of(session_factory, bad.job_id) == ("failed", 2, 0, 2)
    got = rows(session_factory, bad.job_id)
    assert {(r.status, r.label, r.external_id) for r in got} == {
        ("error", None, "id-0"),
        ("error", None, "id-1"),
    }
    assert got[0].error.startswith("could not store: TypeError: keys must be str")
    assert (report.ok, report.errors) == (4, 2)


def test_isolation_keeps_the_rival_rule(
    registered: dict,  # noqa: F811
    models: ModelCache,  # noqa: F811
    session_factory: sessionmaker[Session],
) -> None:
    """A refused job and a job with rival messages in one batch: the isolation pass still
    stores the first rival, reports the second, and reports the refused job."""
    job = uuid.uuid4()
    first = message(["goal match"], total=2, job=job)
    second = message(["stock bank"], total=3, start=1, job=job)
    bad = bad_message("deep-metadata")
    report = run(models, session_factory, first, bad, second)
    assert [r.item_index for r in rows(session_factory, job)] == [0]
    assert {u.job_id for u in report.unstored} == {job, bad.job_id}
    assert report.unstored_reason(first) is None
    assert "already used by a job of 2 items" in (report.unstored_reason(second) or "")


def test_an_outage_is_retried_not_isolated(
    registered: dict,  # noqa: F811
    models: ModelCache,  # noqa: F811
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RETRYABLE errors are not swallowed by the isolation: an OperationalError from the
    write is retried with the whole batch (no split), and so is one raised inside the
    isolation pass (then the whole write starts over)."""
    real = save_batch
    calls: list[int] = []
    failures = iter(
        [
            OperationalError("INSERT", {}, Exception("server closed the connection")),
            None,
            ValueError("a refused value"),  # the fast path fails: isolation starts…
            OperationalError("INSERT", {}, Exception("connection lost")),  # …and sees an outage
            None,
        ]
    )

    def flaky(**kw: Any) -> BatchOutcome:
        calls.append(len(kw["jobs"]))
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return real(**kw)

    monkeypatch.setattr(service, "save_batch", flaky)  # what the service calls
    one = [message(["goal match"]), message(["stock bank", "physics lab"])]
    report = run(models, session_factory, *one)
    assert (report.db_attempts, calls, report.unstored) == (2, [2, 2], ())
    assert_done(session_factory, *one)
    calls.clear()
    two = [message(["cup final"]), message(["bond rates"])]
    report = run(models, session_factory, *two)
    # fast path (refused) → first half in a savepoint (outage) → retry: fast path stores all
    assert (report.db_attempts, calls, report.unstored) == (2, [2, 1, 2], ())
    assert_done(session_factory, *two)
