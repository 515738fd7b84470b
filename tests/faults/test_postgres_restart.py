"""Issue 6 item 1: PostgreSQL itself stopped for ~10 s mid-run, then started again.

The database is a cluster this test owns (`OwnPostgres`, its own port and data directory), so
the server really goes away: open transactions are rolled back, every connection is dropped and
new ones are refused. Both workers retry with backoff, ack nothing meanwhile, and finish once it
is back; messages whose visibility timeout (4 s) passed meanwhile are redelivered and stored
once. (test_outages.py cuts the network to the shared server instead.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.jobs import (
    assert_exactly_once,
    assert_queue_drained,
    row_count,
    submit,
    texts,
    wait_job,
)
from tests.fixtures.workers import Fleet
from textlstm.settings import Settings
from textlstm.testing.postgres import OwnPostgres
from textlstm.testing.processes import paused
from textlstm.testing.redis_server import OwnRedis
from textlstm.testing.waiting import wait_until

pytestmark = pytest.mark.faults


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    pg = OwnPostgres()
    pg.start()
    yield pg
    pg.close()


@pytest.fixture
def db_url(own_postgres: OwnPostgres) -> str:
    """Every database fixture of this module (sessions, topics, workers) uses the own cluster."""
    from textlstm.store.migrate import upgrade

    url = own_postgres.url()
    upgrade(url)
    return url


def test_postgresql_stopped_for_ten_seconds_mid_run_then_started(
    topics: dict,
    e2e_settings: Settings,
    worker_env: dict[str, str],
    own_redis: OwnRedis,
    own_postgres: OwnPostgres,
    tmp_path: Path,
    session_factory: sessionmaker[Session],
) -> None:
    env = {**worker_env, "TEXTLSTM_BROKER_URL": own_redis.url}
    fleet = Fleet(env, tmp_path)
    settings = e2e_settings.model_copy(update={"broker_url": own_redis.url})
    try:
        live = [fleet.start("--batch-max-items", "32"), fleet.start("--batch-max-items", "32")]
        n = 3000
        with paused(*live):  # while the job is queued, so the outage lands mid-run
            job = submit(settings, texts(n, seed=143), per_message=4)
        wait_until(lambda: row_count(session_factory, job) >= 300, 120, "the job under way")
        own_postgres.stop()
        started = time.monotonic()
        wait_until(lambda: fleet.logs().count("failed (attempt") >= 4, 30, "both workers retrying")
        time.sleep(max(0.0, 10 - (time.monotonic() - started)))  # down for ~10 s
        assert all(w.alive() for w in live), "a worker died while the database was down"
        own_postgres.start()
        assert row_count(session_factory, job) < n, "the outage must land mid-run"
        wait_job(settings, job, timeout=180)
        assert_exactly_once(session_factory, {job: n})
        c = own_redis.client()
        assert_queue_drained(c, [settings.queue])
        c.close()
        assert all(w.alive() for w in live)
    finally:
        fleet.close()
