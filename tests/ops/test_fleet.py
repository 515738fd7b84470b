"""Items 2-5 with real worker processes, the real Redis and PostgreSQL.

- Two workers started separately, as if on two hosts: each gets only the broker and database
  URLs (plus its own model cache directory and node name); together they drain one queue, and
  SIGKILLing one mid-run loses nothing and stores nothing twice.
- One worker drains high before normal before bulk, stores items past their deadline as
  `expired`, serves Prometheus metrics that add up to what the database holds, and answers
  `textlstm-admin status`.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.jobs import (
    assert_all_acked,
    assert_nothing_lost,
    stored,
    submit,
    texts,
    wait_job,
)
from tests.fixtures.workers import WorkerProc, host_env
from textlstm.settings import Settings
from textlstm.store.models import Prediction
from textlstm.testing.ports import free_port

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
N = 6000  # items of the two-worker job (1,500 messages of 4)


@pytest.fixture
def procs() -> Iterator[list[WorkerProc]]:
    started: list[WorkerProc] = []
    yield started
    for w in started:
        w.close()


def test_two_separately_started_workers_share_a_queue_and_a_kill_loses_nothing(
    topics: dict,
    e2e_settings: Settings,
    session_factory: sessionmaker[Session],
    redis_client: Any,
    tmp_path: Path,
    procs: list[WorkerProc],
) -> None:
    hosts = {}
    for name in ("hosta", "hostb"):
        w = WorkerProc(host_env(e2e_settings, tmp_path / name / "cache"), tmp_path / f"{name}.log")
        procs.append(w)
        hosts[name] = w.start("--name", name, "--batch-max-items", "32")
    inputs = texts(N, seed=31)
    job = submit(e2e_settings, inputs, per_message=4)  # both are waiting on the queue

    def count() -> int:
        with session_factory() as s:
            return s.scalar(select(func.count()).where(Prediction.job_id == job)) or 0

    for w in hosts.values():
        w.wait_for(lambda _, w=w: bool(w.batches()), 60, "a first batch on each worker")
    hosts["hosta"].kill()  # the machine dies: no drain, its held messages stay unacked
    at_kill = count()
    assert at_kill < N, "the kill must land mid-run"
    # Its held messages come back after the visibility timeout; none is resent by the test.
    assert_nothing_lost(e2e_settings, session_factory, {job: N}, {job: inputs})
    st = wait_job(e2e_settings, job, timeout=90)
    assert (st.status, st.ok, st.errors, st.expected) == ("done", N, 0, N)
    with session_factory() as s:
        per_index = s.execute(
            select(Prediction.item_index, func.count())
            .where(Prediction.job_id == job)
            .group_by(Prediction.item_index)
        ).all()
    assert len(per_index) == N and {n for _, n in per_index} == {1}
    assert_all_acked(redis_client, e2e_settings.queue)
    a, b = (sum(hosts[h].batch_sizes()) for h in ("hosta", "hostb"))
    assert a > 0 and b > 0, "both workers took part"
    assert a + b >= N  # redelivered items of the killed worker may be seen twice, stored once
    for name in hosts:  # each fetched the model into its own cache from the database alone
        assert any((tmp_path / name / "cache").iterdir()), name


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(body)
        for s in fam.samples
    }


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(
        v
        for (n, lab), v in samples.items()
        if n == name and all((k, val) in lab for k, val in labels.items())
    )


def test_priorities_deadlines_metrics_and_status_on_a_real_worker(
    topics: dict,
    e2e_settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    procs: list[WorkerProc],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from textlstm.client import Client

    client = Client(e2e_settings.model_copy(update={"message_max_items": 1}))
    # Enqueued before any worker runs: bulk first, then normal, then high.
    bulk = client.submit(texts(160, seed=41), model="topics", priority="bulk", record_job=False)
    normal = client.submit(texts(40, seed=42), model="topics", record_job=False)
    late = client.submit(texts(10, seed=43), model="topics", expires=0.2, record_job=False)
    high = client.submit(texts(40, seed=44), model="topics", priority="high", record_job=False)
    time.sleep(0.3)  # `late` is past its deadline before any worker can start it

    port = free_port()
    env = host_env(e2e_settings, tmp_path / "cache")
    w = WorkerProc(env, tmp_path / "worker.log")
    procs.append(w)
    w.start("--name", "ops", "--batch-max-items", "16", "--metrics-port", str(port))
    jobs = {
        k: wait_job(e2e_settings, j)
        for k, j in {"bulk": bulk, "normal": normal, "late": late, "high": high}.items()
    }

    # Priority order: every high item was stored before the first normal one, and every
    # normal item before the first bulk one.
    assert jobs["high"].finished_at <= jobs["normal"].started_at
    assert jobs["normal"].finished_at <= jobs["bulk"].started_at
    assert (jobs["bulk"].status, jobs["bulk"].ok) == ("done", 160)
    # Deadline: stored as expired, not dropped, and the job reports it.
    assert (jobs["late"].status, jobs["late"].expired, jobs["late"].errors) == ("expired", 10, 10)
    rows = stored(session_factory, late)
    assert len(rows) == 10 and {r.status for r in rows} == {"expired"}
    assert "not started before the deadline" in rows[0].error

    # Metrics from the supervisor's endpoint add up to what the database holds.
    m = scrape(port)
    assert total(m, "textlstm_items_processed_total") == 240
    assert total(m, "textlstm_items_processed_total", model="topics@1") == 240
    assert total(m, "textlstm_items_failed_total", reason="expired") == 10
    assert total(m, "textlstm_batch_size_sum") == 250
    assert total(m, "textlstm_batch_size_count") >= 250 / 16
    assert total(m, "textlstm_batch_size_bucket", le="16.0") == total(
        m, "textlstm_batch_size_count"
    )
    assert total(m, "textlstm_queue_wait_seconds_count") == 250
    assert total(m, "textlstm_queue_wait_seconds_sum") > 250 * 0.3  # all waited for the start
    assert total(m, "textlstm_inference_seconds_count") >= 1
    assert total(m, "textlstm_model_loaded", model="topics@1") == 1
    assert total(m, "textlstm_model_load_seconds", model="topics@1") > 0
    assert total(m, "textlstm_worker_processes", device="cpu") == 1

    # Status: from Redis, the worker itself (Celery inspect) and the database.
    for key, value in {
        "TEXTLSTM_DATABASE_URL": e2e_settings.database_url,
        "TEXTLSTM_BROKER_URL": e2e_settings.broker_url,
        "TEXTLSTM_QUEUE": e2e_settings.queue,
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    from textlstm.cli import cli
    from textlstm.settings import get_settings

    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["status", "--json", "--timeout", "3"])
        text = CliRunner().invoke(cli, ["status"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    q = e2e_settings.queue
    assert doc["queues"] == {f"{q}.high": 0, q: 0, f"{q}.bulk": 0} and doc["errors"] == {}
    (worker,) = doc["workers"]
    assert worker["node"].startswith("ops0@") and worker["device"] == "cpu"
    assert worker["models"] == ["topics@1"] and worker["items"] == 250
    assert worker["queues"] == [f"{q}.high", q, f"{q}.bulk"]
    assert doc["jobs"]["done"] == 3 and doc["jobs"]["expired"] == 1
    assert doc["oldest_in_flight"] is None
    assert doc["aliases"] == {"topics@production": 1}
    assert doc["broker"] == e2e_settings.broker_url  # no password here to mask
    assert text.exit_code == 0 and "workers online: 1" in text.output, text.output
