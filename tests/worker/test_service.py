"""`classify_batch` and the model cache against real databases (SQLite and PostgreSQL) and a
real tiny model; no broker, no worker."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.models import make_examples
from tests.fixtures.serving import FAST, batch_of, message, rows
from textlstm.classifier.predictor import EMPTY_TEXT_ERROR, Classifier
from textlstm.serving.models import ModelCache
from textlstm.serving.retry import RetryPolicy, ShutdownRequested
from textlstm.serving.service import classify_batch, predict_isolated, record_rejection
from textlstm.store.jobs import get_job
from textlstm.store.models import Prediction
from textlstm.store.registry import register_bundle, set_alias
from textlstm.testing.bundles import write_fake_bundle
from textlstm.wire.salvage import salvage


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize("forward_batch", [128, 4])  # one pass, or 8 passes sorted by length
def test_batch_across_jobs_matches_in_process_predict(
    registered: dict,
    models: ModelCache,
    session_factory: sessionmaker[Session],
    tiny_classifier: Classifier,
    forward_batch: int,
) -> None:
    texts = [e.text for e in make_examples(10, seed=7)]
    m1 = message(texts[:20] + ["   "])
    m2 = message(texts[20:])
    report = classify_batch(
        batch_of(m1, m2),
        models=models,
        session_factory=session_factory,
        retry=FAST,
        forward_batch=forward_batch,
    )
    assert (report.items, report.inserted, report.errors, report.model) == (31, 31, 1, "topics@1")
    expected = tiny_classifier.predict(texts[:20] + ["   "] + texts[20:])
    got = rows(session_factory, m1.job_id) + rows(session_factory, m2.job_id)
    for row, pred in zip(got, expected, strict=True):
        assert row.model_version_id == registered["v1"]
        if pred.label is None:
            assert (row.status, row.error) == ("error", EMPTY_TEXT_ERROR)
            continue
        assert (row.status, row.label) == ("ok", pred.label)
        assert row.probabilities.keys() == pred.probabilities.keys()
        for k, p in pred.probabilities.items():
            assert abs(row.probabilities[k] - p) < 1e-5
    with session_factory() as s:
        assert get_job(session=s, job_id=m1.job_id).status == "partial"
        assert get_job(session=s, job_id=m2.job_id).status == "done"


def test_redelivery_and_repeated_items_are_stored_once(
    registered: dict, models: ModelCache, session_factory: sessionmaker[Session]
) -> None:
    job = uuid.uuid4()
    first = message(["goal match team", "stock market"], total=4, job=job)
    again = batch_of(first, first)  # the same message twice in one batch (redelivered copy)
    report = classify_batch(again, models=models, session_factory=session_factory, retry=FAST)
    assert report.inserted == 2
    second = classify_batch(
        batch_of(first), models=models, session_factory=session_factory, retry=FAST
    )
    assert (second.inserted, second.duplicates) == (0, 2)
    rest = message(["physics lab", "cup final"], total=4, start=2, job=job)
    classify_batch(batch_of(rest), models=models, session_factory=session_factory, retry=FAST)
    with session_factory() as s:
        j = get_job(session=s, job_id=job)
        assert (j.ok_count, j.error_count, j.status) == (4, 0, "done")


def test_unknown_model_fails_the_job_with_the_reason(
    registered: dict, models: ModelCache, session_factory: sessionmaker[Session]
) -> None:
    m = message(["a text", "another"], model="nosuch@production")
    report = classify_batch(batch_of(m), models=models, session_factory=session_factory, retry=FAST)
    assert report.model is None and report.errors == 2
    got = rows(session_factory, m.job_id)
    assert {r.status for r in got} == {"error"}
    assert "model unavailable" in got[0].error and "nosuch" in got[0].error
    with session_factory() as s:
        assert get_job(session=s, job_id=m.job_id).status == "failed"


def test_unloadable_bundle_fails_the_job_with_the_reason(
    session_factory: sessionmaker[Session], models: ModelCache, tmp_path: Path
) -> None:
    fake = write_fake_bundle(tmp_path / "fake")  # valid manifest, weights are not safetensors
    with session_factory.begin() as s:
        register_bundle(session=s, path=fake, name="broken")
    m = message(["text"], model="broken")
    classify_batch(batch_of(m), models=models, session_factory=session_factory, retry=FAST)
    (row,) = rows(session_factory, m.job_id)
    assert row.status == "error" and "cannot be loaded" in row.error


def test_last_resort_stores_every_item_as_an_error_with_the_reason(
    registered: dict, models: ModelCache, session_factory: sessionmaker[Session]
) -> None:
    m = message(["goal", "stock"])
    report = classify_batch(
        batch_of(m),
        models=models,
        session_factory=session_factory,
        retry=FAST,
        fail_reason="internal error in the worker",
    )
    assert (report.errors, report.inserted, report.model) == (2, 2, None)
    assert {r.error for r in rows(session_factory, m.job_id)} == {"internal error in the worker"}


def test_moved_alias_is_picked_up_after_the_refresh_interval(
    registered: dict, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    clock = Clock()
    cache = ModelCache(
        session_factory=session_factory, cache_dir=tmp_path / "cache", refresh_s=10.0, clock=clock
    )
    held = cache.get("topics")
    assert held.version_id == registered["v1"]
    with session_factory.begin() as s:
        set_alias(session=s, name="topics", version=2, alias="production")
    clock.t = 5.0
    assert cache.get("topics").version_id == registered["v1"]
    clock.t = 10.5
    moved = cache.get("topics")
    assert moved.version_id == registered["v2"] and moved.ref == "topics@2"
    assert held.ref == "topics@1"  # a batch holding the old model keeps it
    assert cache.get("topics@1").version_id == registered["v1"]  # pinned refs need no refresh


def test_a_failing_text_becomes_an_error_row_and_the_rest_succeeds(
    tiny_classifier: Classifier,
) -> None:
    class Fussy:
        def predict(self, texts: list[str], **kw: object) -> object:
            if "boom" in texts:
                raise RuntimeError("cannot handle boom")
            return tiny_classifier.predict(texts, **kw)  # type: ignore[arg-type]

    out = predict_isolated(Fussy(), ["goal", "boom", "stock", "lab"], batch_size=4, max_tokens=None)
    assert [o.error is None for o in out] == [True, False, True, True]
    assert "cannot handle boom" in (out[1].error or "")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_locked_database_is_retried_until_it_returns(
    registered: dict, db_url: str, tmp_path: Path
) -> None:
    from textlstm.store.db import make_engine, make_session_factory

    engine = make_engine(db_url, sqlite_busy_timeout_ms=50)
    factory = make_session_factory(engine)
    cache = ModelCache(session_factory=factory, cache_dir=tmp_path / "cache")
    cache.get("topics")  # loaded before the outage
    m = message(["goal match", "stock bank"])
    blocker = make_engine(db_url)
    conn = blocker.connect()
    conn.begin()  # BEGIN IMMEDIATE: holds the write lock
    timer = threading.Timer(0.6, conn.close)
    timer.start()
    try:
        report = classify_batch(batch_of(m), models=cache, session_factory=factory, retry=FAST)
    finally:
        timer.join()
        blocker.dispose()
    assert report.db_attempts > 1 and report.inserted == 2
    engine.dispose()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_stop_request_during_an_outage_commits_nothing(
    registered: dict, db_url: str, tmp_path: Path, session_factory: sessionmaker[Session]
) -> None:
    from textlstm.store.db import make_engine, make_session_factory

    engine = make_engine(db_url, sqlite_busy_timeout_ms=50)
    factory = make_session_factory(engine)
    cache = ModelCache(session_factory=factory, cache_dir=tmp_path / "cache")
    cache.get("topics")
    blocker = make_engine(db_url)
    conn = blocker.connect()
    conn.begin()
    calls = iter([False, False, True, True, True])
    policy = RetryPolicy(initial_s=0.02, max_s=0.05, should_stop=lambda: next(calls, True))
    m = message(["goal"])
    try:
        with pytest.raises(ShutdownRequested):
            classify_batch(batch_of(m), models=cache, session_factory=factory, retry=policy)
    finally:
        conn.close()
        blocker.dispose()
        engine.dispose()
    assert rows(session_factory, m.job_id) == []


def test_rejection_is_recorded_on_the_job_when_readable(
    session_factory: sessionmaker[Session], engine: Engine
) -> None:
    jid = uuid.uuid4()
    body = {
        "schema_version": 2,
        "job_id": str(jid),
        "model": "topics",
        "total": 3,
        "items": [{"index": 0, "text": "a"}, {"index": 1, "text": "b"}],
    }
    n = record_rejection(
        salvage(body), "unsupported schema_version 2", session_factory=session_factory, retry=FAST
    )
    assert n == 2
    got = rows(session_factory, jid)
    assert [r.status for r in got] == ["error", "error"]
    assert got[0].error == "message rejected: unsupported schema_version 2"
    no_total = {"job_id": str(uuid.uuid4()), "items": [{"index": 0}]}
    assert (
        record_rejection(salvage(no_total), "x", session_factory=session_factory, retry=FAST) == 0
    )
    with Session(engine) as s:
        assert s.scalar(select(Prediction.job_id).where(Prediction.job_id != jid)) is None
