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
    assert_operator_sees_poison,
    assert_queue_drained,
    poison_between_two_jobs,
)
from tests.fixtures.workers import Fleet
from textlstm.settings import Settings
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
        poison, w = poison_between_two_jobs(fleet, settings, session_factory, CRASH, seed=160)
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
