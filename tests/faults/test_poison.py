"""Poison-message quarantine against a real worker: a message that kills the worker process
every time it is handled (here the test-only `TEXTLSTM_WORKER_TEST_CRASH_TEXT` hook, which
SIGKILLs the process as the OOM killer would) must not crash-loop the fleet. It is taken at most
`worker_max_deliveries` times, then moved to the dead-letter list with the reason and recorded
on its job, while every valid message queued around it is stored exactly once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.jobs import (
    assert_exactly_once,
    assert_operator_sees_poison,
    assert_queue_drained,
    stored,
    submit,
    texts,
    wait_job,
)
from tests.fixtures.workers import Fleet
from textlstm.settings import Settings
from textlstm.testing.processes import paused
from textlstm.testing.redis_server import OwnRedis
from textlstm.wire.deadletters import DeadLetter, dead_letter_key

pytestmark = [
    pytest.mark.faults,
    pytest.mark.parametrize("db_url", ["postgresql"], indirect=True),
]

CRASH = "__this text kills the worker process__"


def test_a_message_that_kills_the_worker_is_quarantined_after_three_deliveries(
    topics: dict,
    e2e_settings: Settings,
    worker_env: dict[str, str],
    own_redis: OwnRedis,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = e2e_settings.model_copy(update={"broker_url": own_redis.url})
    env = {**worker_env, "TEXTLSTM_BROKER_URL": own_redis.url,
           "TEXTLSTM_WORKER_TEST_CRASH_TEXT": CRASH}  # fmt: skip
    fleet = Fleet(env, tmp_path)
    redis = own_redis.client()
    try:
        w = fleet.start("--batch-max-items", "64")
        with paused(w):  # all queued before the worker takes any: the poison one mid-queue
            before = submit(settings, texts(60, seed=160), per_message=3)
            poison = submit(settings, ["a fine text", CRASH], per_message=2)
            after = submit(settings, texts(60, seed=161), per_message=3)
        for job in (before, after):
            st = wait_job(settings, job, timeout=180)
            assert (st.status, st.ok) == ("done", 60)
        st = wait_job(settings, poison, timeout=180)
        assert (st.status, st.errors) == ("failed", 2)
        rows = stored(session_factory, poison)
        assert all("quarantined after 3 deliveries" in r.error for r in rows), rows[0].error
        assert_exactly_once(session_factory, {before: 60, after: 60})
        assert_exactly_once(session_factory, {poison: 2}, ok=False)

        log = fleet.logs()
        assert log.count("exited with") == 3, log[-3000:]  # three deaths, then no more
        assert "running it alone" in log
        (raw,) = redis.lrange(dead_letter_key(settings.queue), 0, -1)
        record = DeadLetter.from_json(raw)
        assert (record.stage, record.deliveries) == ("poison", 3)
        assert record.readable_job_id() == str(poison)
        assert_queue_drained(redis, [settings.queue])
        assert redis.hlen("unacked_deliveries") == 0
        assert w.alive()

        # The operator sees it, in status and in the dead-letter commands.
        assert_operator_sees_poison(monkeypatch, own_redis.url, settings, record.id, poison)
    finally:
        redis.close()
        fleet.close()
