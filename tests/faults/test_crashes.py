"""Issue 6 item 1: worker crashes. Each test ends with `assert_exactly_once`: every submitted item
has exactly one row, job counts match the rows, nothing is left queued or running, and the
test's own Redis holds nothing queued or unacked.

- SIGKILL of a worker (supervisor and Celery process together) mid-batch, five times in one
  run, while two workers share the queue: a killed worker's unacked messages come back after
  the visibility timeout (4 s here) and the survivors store what is missing. Nothing is
  resent by the test: worker.transport records a message as delivered in the same atomic step
  that takes it off the queue, so no kill can lose one (kombu's BRPOP lost one or two 4-item
  messages in each run of five kills, celery/celery#7950).
- A worker stopped with SIGSTOP past the visibility timeout while holding messages: another
  worker gets them and finishes the job; when the stuck one resumes and commits the same items
  again, the database keeps one row each and the counters do not move.
"""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import pytest
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
from textlstm.testing.redis_server import OwnRedis
from textlstm.testing.waiting import wait_until

pytestmark = [
    pytest.mark.faults,
    pytest.mark.parametrize("db_url", ["postgresql"], indirect=True),
]


@pytest.fixture
def fleet(worker_env: dict[str, str], own_redis: OwnRedis, tmp_path: Path):  # type: ignore[no-untyped-def]
    f = Fleet({**worker_env, "TEXTLSTM_BROKER_URL": own_redis.url}, tmp_path)
    yield f
    f.close()


def test_sigkill_mid_batch_five_times_with_two_workers(
    fleet: Fleet,
    topics: dict,
    e2e_settings: Settings,
    own_redis: OwnRedis,
    session_factory: sessionmaker[Session],
) -> None:
    settings = e2e_settings.model_copy(update={"broker_url": own_redis.url})
    live = [fleet.start("--batch-max-items", "32"), fleet.start("--batch-max-items", "32")]
    jobs: dict[uuid.UUID, int] = {}
    inputs: dict[uuid.UUID, list[str]] = {}
    redis = own_redis.client()
    in_flight_at_kill: list[int] = []
    for k in range(5):
        n = 1200
        inputs_k = texts(n, seed=100 + k)
        # The workers are paused while the job is queued: submitting 300 messages takes
        # about as long as two workers need to finish them, and the kill must land mid-run.
        with paused(*live):
            job = submit(settings, inputs_k, per_message=4)  # 300 messages
        jobs[job], inputs[job] = n, inputs_k
        wait_until(lambda j=job: row_count(session_factory, j) >= 150, 120, "the job under way")
        in_flight_at_kill.append(int(redis.hlen("unacked")))
        victim = live.pop(k % 2)
        fleet.signal(victim, signal.SIGKILL)
        assert victim.proc is not None and victim.proc.wait(10) == -signal.SIGKILL
        assert row_count(session_factory, job) < n, "the kill must land mid-run"
        live.insert(k % 2, fleet.start("--batch-max-items", "32"))
    assert_nothing_lost(settings, session_factory, jobs, inputs)
    for job in jobs:
        wait_job(settings, job, timeout=120)
    assert all(n > 0 for n in in_flight_at_kill), "every kill left delivered, unacked messages"
    assert_exactly_once(session_factory, jobs)
    assert_queue_drained(redis, [settings.queue])
    assert "duplicates=" in fleet.logs()
    assert all(w.alive() for w in live)
    redis.close()


def test_worker_stopped_past_the_visibility_timeout_then_resumed(
    fleet: Fleet,
    topics: dict,
    e2e_settings: Settings,
    own_redis: OwnRedis,
    session_factory: sessionmaker[Session],
) -> None:
    settings = e2e_settings.model_copy(update={"broker_url": own_redis.url})
    # The stuck worker buffers everything it receives (no flush for a minute), so it is
    # stopped while holding unacked messages and no open transaction.
    stuck = fleet.start(
        "--batch-max-items", "1000", "--batch-max-wait-ms", "60000", "--batch-idle-ms", "60000"
    )
    n = 400
    job = submit(settings, texts(n, seed=120), per_message=4)  # 100 messages
    redis = own_redis.client()
    wait_until(lambda: redis.hlen("unacked") == 100, 60, "all 100 messages held by one worker")
    fleet.signal(stuck, signal.SIGSTOP)
    assert row_count(session_factory, job) == 0
    helper = fleet.start()
    # Redelivered after the 4 s visibility timeout and finished while the first is stopped.
    st = wait_job(settings, job, timeout=120)
    assert (st.status, st.ok) == ("done", n)
    assert_exactly_once(session_factory, {job: n})

    fleet.signal(stuck, signal.SIGCONT)
    assert stuck.terminate(60) == 0  # drains its buffer: the same 400 items, committed again
    assert "draining 100 buffered message(s)" in stuck.log()
    assert "inserted=0 duplicates=400" in stuck.log()
    assert_exactly_once(session_factory, {job: n})
    assert_queue_drained(redis, [settings.queue])
    assert helper.alive()
    redis.close()
