"""Issue 4 item 9: a real worker process, the real Redis, PostgreSQL (and SQLite).

Each test checks the database, not the worker's word: one row per item, equal to in-process
`Classifier.predict`, counts and status consistent.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.jobs import stored, submit, wait_job
from tests.fixtures.models import make_examples
from tests.fixtures.workers import WorkerProc
from textlstm.classifier.predictor import Classifier
from textlstm.settings import Settings
from textlstm.store.models import Prediction
from textlstm.testing.processes import paused

PG = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def texts(n: int, seed: int = 11) -> list[str]:
    out = [e.text for e in make_examples(n // 3 + 1, seed=seed)]
    return out[:n]


def assert_all_acked(redis_client: Any, queue: str) -> None:
    """Nothing left in the queue and nothing delivered-but-unacked (kombu's Redis index)."""
    deadline = time.monotonic() + 5
    while redis_client.hlen("unacked") and time.monotonic() < deadline:
        time.sleep(0.05)  # the last batch's ack follows its commit by a moment
    assert redis_client.llen(queue) == 0 and redis_client.hlen("unacked") == 0


def assert_matches(rows: list[Prediction], inputs: list[str], clf: Classifier) -> None:
    """Exactly one row per item, label and probabilities as in-process predict (1e-5)."""
    assert [r.item_index for r in rows] == list(range(len(inputs)))
    for row, pred in zip(rows, clf.predict(inputs), strict=True):
        assert row.status == "ok" and row.label == pred.label, row.item_index
        assert max(abs(row.probabilities[k] - p) for k, p in pred.probabilities.items()) < 1e-5


@PG
def test_a_many_one_text_messages_are_batched_together(
    redis_client: Any,
    workers: Callable[..., WorkerProc],
    topics: dict,
    e2e_settings: Settings,
    session_factory: sessionmaker[Session],
    tiny_classifier: Classifier,
) -> None:
    inputs = texts(1000)
    # Enqueue first, then start the worker: it drains a full queue (saturation).
    jobs = [submit(e2e_settings, inputs[i : i + 250], per_message=1) for i in range(0, 1000, 250)]
    w = workers()
    for n, job in enumerate(jobs):
        st = wait_job(e2e_settings, job)
        assert (st.status, st.ok, st.errors) == ("done", 250, 0)
        assert_matches(
            stored(session_factory, job), inputs[n * 250 : (n + 1) * 250], tiny_classifier
        )
    assert_all_acked(redis_client, e2e_settings.queue)
    sizes = w.batch_sizes()
    assert sum(sizes) == 1000
    mean = sum(sizes) / len(sizes)
    assert mean > 1, sizes
    assert mean > 32, f"mean formed batch {mean:.1f} from {len(sizes)} batches: {sizes}"
    # One record per micro-batch (TEXTLSTM_WORKER_STATS_DIR), in one file per worker process:
    # each of the 1,000 one-text messages and rows is in exactly one record.
    records = w.batches()
    assert sum(r.messages for r in records) == 1000
    assert sum(r.inserted for r in records) == sum(r.ok for r in records) == 1000
    assert {r.model for r in records} == {"topics@1"} and {r.source for r in records} == {
        "microbatch"
    }
    files = sorted(p.name for p in w.stats_dir.iterdir())
    assert files == sorted({f"{r.host}-{r.pid}.jsonl" for r in records}) and len(files) == 1
    assert all(r.forward_ms >= r.tokenize_ms > 0 and r.db_ms > 0 for r in records)
    # 1,000 messages were taken off Redis: the records time it (bench/pipeline.py's fetch).
    fetch_ms = [r.fetch_ms for r in records]
    assert sum(fetch_ms) > 0, fetch_ms


@PG
def test_b_one_big_job_is_split_into_micro_batches(
    redis_client: Any,
    workers: Callable[..., WorkerProc],
    topics: dict,
    e2e_settings: Settings,
    session_factory: sessionmaker[Session],
    tiny_classifier: Classifier,
) -> None:
    w = workers("--batch-max-items", "100")
    inputs = texts(1000, seed=12)
    job = submit(e2e_settings, inputs)  # 4 messages of up to 256 items
    st = wait_job(e2e_settings, job)
    assert (st.status, st.ok, st.expected, st.model) == ("done", 1000, 1000, "topics@1")
    assert_matches(stored(session_factory, job), inputs, tiny_classifier)
    assert max(w.batch_sizes()) <= 100 and sum(w.batch_sizes()) == 1000
    assert_all_acked(redis_client, e2e_settings.queue)


@SQLITE
def test_b_sqlite_one_job_end_to_end(
    workers: Callable[..., WorkerProc],
    topics: dict,
    e2e_settings: Settings,
    session_factory: sessionmaker[Session],
    tiny_classifier: Classifier,
) -> None:
    w = workers()
    assert "device cpu, 1 torch thread(s)" in w.log()
    inputs = texts(300, seed=13) + ["  "]
    job = submit(e2e_settings, inputs, per_message=64)
    st = wait_job(e2e_settings, job)
    assert (st.status, st.ok, st.errors) == ("partial", 300, 1)
    rows = stored(session_factory, job)
    assert rows[-1].status == "error" and "empty text" in rows[-1].error
    assert_matches(rows[:-1], inputs[:-1], tiny_classifier)


@PG
def test_c_sigkill_mid_run_then_another_worker_stores_every_item_once(
    workers: Callable[..., WorkerProc],
    topics: dict,
    e2e_settings: Settings,
    session_factory: sessionmaker[Session],
    tiny_classifier: Classifier,
) -> None:
    inputs = texts(2000, seed=14)
    job = submit(e2e_settings, inputs, per_message=4)  # 500 messages
    first = workers("--batch-max-items", "32")

    def count() -> int:
        with session_factory() as s:
            return s.scalar(select(func.count()).where(Prediction.job_id == job)) or 0

    deadline = time.monotonic() + 60
    while count() < 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    first.kill()
    done_at_kill = count()
    assert 0 < done_at_kill < 2000, "the kill must land mid-run"
    workers()
    st = wait_job(e2e_settings, job, timeout=120)
    assert (st.status, st.ok, st.errors, st.expected) == ("done", 2000, 0, 2000)
    assert_matches(stored(session_factory, job), inputs, tiny_classifier)


@PG
def test_d_moving_the_production_alias_mid_stream(
    workers: Callable[..., WorkerProc],
    topics: dict,
    e2e_settings: Settings,
    session_factory: sessionmaker[Session],
) -> None:
    from textlstm.store.registry import set_alias

    w = workers("--batch-max-items", "16")  # small batches: a long stream of commits
    job = submit(e2e_settings, texts(3000, seed=15), per_message=1)

    def rows_so_far() -> int:
        with session_factory() as s:
            return s.scalar(select(func.count()).where(Prediction.job_id == job)) or 0

    while rows_so_far() < 200:
        time.sleep(0.02)
    # Paused while the alias moves: a worker this fast could otherwise finish the 3,000 items
    # before its next alias refresh (0.5 s here), and no item would show the switch.
    with paused(w):
        assert rows_so_far() < 3000, "the alias must move mid-stream"
        with session_factory.begin() as s:
            set_alias(session=s, name="topics", version=2, alias="production")
        time.sleep(1.0)  # past the refresh interval, well within the 4 s visibility timeout
    st = wait_job(e2e_settings, job, timeout=120)
    assert st.status == "done" and st.ok == 3000
    with session_factory() as s:
        versions = list(
            s.scalars(
                select(Prediction.model_version_id)
                .where(Prediction.job_id == job)
                .order_by(Prediction.created_at, Prediction.item_index)
            )
        )
    switch = versions.index(topics[2])
    assert switch >= 200 and set(versions[:switch]) == {topics[1]}
    assert set(versions[switch:]) == {topics[2]}, "no item after the switch used the old model"
    assert "moved: topics@1 -> topics@2" in w.log()
    later = submit(e2e_settings, texts(10, seed=16))
    wait_job(e2e_settings, later)
    assert {r.model_version_id for r in stored(session_factory, later)} == {topics[2]}


def publish_raw(settings: Settings, bodies: list[tuple[Any, dict[str, Any], str]]) -> None:
    """Send hand-made (args, kwargs, serializer) tasks, as a foreign producer might."""
    from celery import Celery

    app = Celery("raw", broker=settings.broker_url, set_as_current=False)
    app.conf.accept_content = ["json", "pickle"]
    try:
        for args, kwargs, serializer in bodies:
            app.send_task(
                "textlstm.classify",
                args=args,
                kwargs=kwargs,
                queue=settings.queue,
                serializer=serializer,
            )
    finally:
        app.close()


@PG
def test_e_malformed_messages_are_rejected_and_the_worker_keeps_going(
    workers: Callable[..., WorkerProc],
    topics: dict,
    e2e_settings: Settings,
    session_factory: sessionmaker[Session],
    tiny_classifier: Classifier,
) -> None:
    w = workers()
    good = texts(60, seed=17)
    bad_job = uuid.uuid4()
    wrong_version = {
        "schema_version": 3,
        "job_id": str(bad_job),
        "model": "topics",
        "total": 2,
        "items": [{"index": 0, "text": "a"}, {"index": 1, "text": "b"}],
    }
    valid_ok = {
        "schema_version": 1,
        "job_id": str(uuid.uuid4()),
        "model": "topics",
        "total": 1,
        "items": [{"index": 0, "text": "goal"}],
    }
    publish_raw(
        e2e_settings,
        [
            ([wrong_version], {}, "json"),
            ([{"schema_version": 1, "job_id": str(uuid.uuid4()), "model": "topics"}], {}, "json"),
            ([{**valid_ok, "items": [{"index": 0, "text": 42}]}], {}, "json"),
            ([valid_ok], {"extra": 1}, "json"),
            (["not an object"], {}, "json"),
            ([valid_ok], {}, "pickle"),
        ],
    )
    job = submit(e2e_settings, good, per_message=7)
    st = wait_job(e2e_settings, job)
    assert (st.status, st.ok) == ("done", 60)
    assert_matches(stored(session_factory, job), good, tiny_classifier)
    bad = wait_job(e2e_settings, bad_job)
    assert (bad.status, bad.errors) == ("failed", 2)
    assert all(
        "unsupported message schema_version 3" in r.error for r in stored(session_factory, bad_job)
    )
    w.wait_for(
        lambda log: log.count("] rejected message ") + log.count("] dead-lettered a message") >= 6,
        10,
        "six refusals logged",
    )
    assert "content-type 'application/x-python-serialize' is not accepted: JSON only" in w.log()
    assert w.alive()
    after = submit(e2e_settings, texts(5, seed=18))
    assert wait_job(e2e_settings, after).status == "done"


@PG
def test_f_single_text_jobs_through_the_batching_producer(
    redis_client: Any,
    workers: Callable[..., WorkerProc],
    topics: dict,
    e2e_settings: Settings,
    session_factory: sessionmaker[Session],
    tiny_classifier: Classifier,
) -> None:
    """600 one-text jobs coalesced into version 2 envelopes, plus one envelope with a bad part:
    every good job done and equal to in-process predict, the bad part's job failed with the
    reason, its envelope neighbours stored, every envelope acked once."""
    from textlstm.client.producer import Producer

    inputs = texts(600, seed=21)
    with Producer(e2e_settings, linger_ms=20) as producer:
        jobs = [producer.submit([t], model="topics") for t in inputs]
    assert producer.sent_messages <= 600 // 256 + 2  # envelopes, not one message per job
    bad_job, neighbour = uuid.uuid4(), uuid.uuid4()
    part = {"schema_version": 1, "model": "topics", "total": 1}
    publish_raw(
        e2e_settings,
        [
            (
                [
                    {
                        "schema_version": 2,
                        "messages": [
                            {**part, "job_id": str(bad_job), "items": [{"index": 0, "text": 42}]},
                            {
                                **part,
                                "job_id": str(neighbour),
                                "items": [{"index": 0, "text": "goal"}],
                            },
                        ],
                    }
                ],
                {},
                "json",
            )
        ],
    )
    w = workers()
    for job in jobs:
        st = wait_job(e2e_settings, job)
        assert (st.status, st.ok) == ("done", 1)
    rows = [stored(session_factory, j)[0] for j in jobs]
    for row, pred in zip(rows, tiny_classifier.predict(inputs), strict=True):
        assert row.label == pred.label
        assert max(abs(row.probabilities[k] - p) for k, p in pred.probabilities.items()) < 1e-5
    assert wait_job(e2e_settings, neighbour).status == "done"
    bad = wait_job(e2e_settings, bad_job)
    assert (bad.status, bad.errors) == ("failed", 1)
    (row,) = stored(session_factory, bad_job)
    assert "envelope part 0: item 0: text must be a string, got int" in row.error
    assert_all_acked(redis_client, e2e_settings.queue)
    assert sum(w.batch_sizes()) == 601
    assert sum(w.batch_sizes()) / len(w.batch_sizes()) > 32
    assert w.alive()


@PG
def test_sigterm_drains_the_buffer_before_exit(
    workers: Callable[..., WorkerProc],
    topics: dict,
    e2e_settings: Settings,
    session_factory: sessionmaker[Session],
) -> None:
    # A long max wait: the items sit in the batcher until the drain flushes them.
    w = workers("--batch-max-wait-ms", "60000", "--batch-idle-ms", "60000")
    job = submit(e2e_settings, texts(20, seed=19), per_message=1)
    time.sleep(1.5)
    assert stored(session_factory, job) == []
    assert w.terminate() == 0
    assert "draining 20 buffered message(s)" in w.log()
    st = wait_job(e2e_settings, job, timeout=5)
    assert (st.status, st.ok) == ("done", 20)


@PG
def test_database_outage_is_retried_without_acking_and_items_land_after(
    workers: Callable[..., WorkerProc],
    topics: dict,
    e2e_settings: Settings,
    db_url: str,
    session_factory: sessionmaker[Session],
) -> None:
    from sqlalchemy.engine import make_url

    from textlstm.testing.proxy import TcpProxy

    url = make_url(db_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    via_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        w = workers("--warmup", "topics", env={"TEXTLSTM_DATABASE_URL": via_proxy})
        proxy.pause()
        job = submit(e2e_settings, texts(50, seed=21), per_message=5)
        w.wait_for(lambda log: "failed (attempt 3)" in log, 30, "retries with backoff")
        assert stored(session_factory, job) == []
        proxy.resume()
        st = wait_job(e2e_settings, job, timeout=60)
        assert (st.status, st.ok, st.errors) == ("done", 50, 0)
        assert len(stored(session_factory, job)) == 50
        assert w.alive()
    finally:
        proxy.close()
