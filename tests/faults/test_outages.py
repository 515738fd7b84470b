"""Issue 6 item 1: the services go away mid-run. Each test ends with `assert_exactly_once`.

- PostgreSQL unreachable for ~10 s while two workers are mid-job: the connection is cut by a
  TCP proxy between the workers and the shared server (which is never stopped). Workers retry
  with backoff, ack nothing meanwhile, and finish once it is back; messages whose visibility
  timeout (4 s) passed during the outage are redelivered and stored once.
- Redis restarted mid-run (a redis-server the test owns, `--appendonly yes --appendfsync
  always`, the compose setting being `everysec`): queued messages and kombu's unacked hash are
  in the append-only file (worker.transport pops and records a message as unacked in one
  step), so the job finishes with nothing lost and nothing resent; workers reconnect by
  themselves. What does not survive:
  with persistence off, every queued message (test_recovery.py shows `jobs requeue` then).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.jobs import (
    assert_exactly_once,
    assert_nothing_lost,
    assert_queue_drained,
    row_count,
    submit,
    texts,
    wait_job,
)
from tests.fixtures.workers import Fleet
from textlstm.settings import Settings
from textlstm.testing.processes import paused
from textlstm.testing.proxy import TcpProxy
from textlstm.testing.redis_server import OwnRedis
from textlstm.testing.waiting import wait_until

pytestmark = [
    pytest.mark.faults,
    pytest.mark.parametrize("db_url", ["postgresql"], indirect=True),
]


def test_postgresql_unreachable_for_ten_seconds_mid_run(
    topics: dict,
    e2e_settings: Settings,
    worker_env: dict[str, str],
    own_redis: OwnRedis,
    db_url: str,
    tmp_path: Path,
    session_factory: sessionmaker[Session],
) -> None:
    url = make_url(db_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    via_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    env = {**worker_env, "TEXTLSTM_BROKER_URL": own_redis.url, "TEXTLSTM_DATABASE_URL": via_proxy}
    fleet = Fleet(env, tmp_path)
    settings = e2e_settings.model_copy(update={"broker_url": own_redis.url})
    try:
        live = [fleet.start("--batch-max-items", "32"), fleet.start("--batch-max-items", "32")]
        n = 3000
        with paused(*live):  # while the job is queued, so the outage lands mid-run
            job = submit(settings, texts(n, seed=140), per_message=4)
        wait_until(lambda: row_count(session_factory, job) >= 300, 120, "the job under way")
        proxy.pause()
        started = time.monotonic()
        wait_until(lambda: fleet.logs().count("failed (attempt") >= 4, 30, "both workers retrying")
        # Counted once both workers are retrying: a COMMIT whose bytes crossed the proxy just
        # before the pause still lands on the server, and its worker only learns of it later.
        cut_at = row_count(session_factory, job)  # read directly, not through the proxy
        assert cut_at < n, "the outage must land mid-run"
        time.sleep(max(0.0, 10 - (time.monotonic() - started)))  # the outage lasts ~10 s
        assert row_count(session_factory, job) == cut_at, "nothing stored while it was down"
        proxy.resume()
        wait_job(settings, job, timeout=180)
        assert_exactly_once(session_factory, {job: n})
        c = own_redis.client()
        assert_queue_drained(c, [settings.queue])
        c.close()
        assert all(w.alive() for w in fleet.procs)
    finally:
        fleet.close()
        proxy.close()


def test_redis_restarted_mid_run_with_append_only_persistence(
    topics: dict,
    e2e_settings: Settings,
    worker_env: dict[str, str],
    own_redis: OwnRedis,
    tmp_path: Path,
    session_factory: sessionmaker[Session],
) -> None:
    fleet = Fleet({**worker_env, "TEXTLSTM_BROKER_URL": own_redis.url}, tmp_path)
    settings = e2e_settings.model_copy(update={"broker_url": own_redis.url})
    try:
        # Queued before any worker exists: all of it must survive the restarts.
        inputs = {"early": texts(400, seed=141), "main": texts(12_000, seed=142)}
        early = submit(settings, inputs["early"], per_message=4)
        # Submitted before the workers start too: submitting 4,000 messages takes long enough
        # for two workers to finish them as they arrive, and the restart must land mid-run.
        job = submit(settings, inputs["main"], per_message=3)  # 4,000 messages
        fleet.start("--batch-max-items", "16")
        fleet.start("--batch-max-items", "16")
        jobs: dict[uuid.UUID, int] = {early: 400, job: 12_000}
        wait_until(lambda: row_count(session_factory, job) >= 200, 120, "the job under way")
        own_redis.stop()  # Redis goes away mid-run (a managed restart)...
        assert row_count(session_factory, job) < 12_000, "the restart must land mid-run"
        time.sleep(2.0)  # ...stays away long enough for every worker to notice...
        own_redis.start()  # ...and comes back with its append-only file
        c = own_redis.client()
        assert c.llen(settings.queue) + c.hlen("unacked") > 0, "the AOF kept the backlog"
        # A message taken at the instant Redis went away is in the AOF's unacked hash (the
        # atomic pop of worker.transport), so it comes back after the visibility timeout.
        texts_by_job = {early: inputs["early"], job: inputs["main"]}
        assert_nothing_lost(settings, session_factory, jobs, texts_by_job)
        for j in jobs:
            wait_job(settings, j, timeout=180)
        assert_exactly_once(session_factory, jobs)
        assert_queue_drained(c, [settings.queue])
        c.close()
        assert all(w.alive() for w in fleet.procs)
    finally:
        fleet.close()
