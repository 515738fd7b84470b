"""Issue 6 item 6: `jobs reap` finds jobs without progress and `jobs requeue` re-enqueues the
items that have no row, from the broker's unacked copy or the producer's input file.

The scenarios are the two ways a message leaves Redis without reaching SQL: a Redis restarted
without append-only persistence (every queued message gone), and a worker SIGKILLed while it
held delivered, unacked messages (still in kombu's unacked hash).
"""

from __future__ import annotations

import csv
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.jobs import assert_exactly_once, assert_queue_drained, texts, wait_job
from tests.fixtures.workers import Fleet
from textlstm.cli import cli
from textlstm.settings import Settings, get_settings
from textlstm.testing.redis_server import OwnRedis
from textlstm.testing.waiting import wait_until

pytestmark = pytest.mark.faults
PG = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


@pytest.fixture
def cli_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, e2e_settings: Settings, own_redis: OwnRedis
) -> Settings:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEXTLSTM_DATABASE_URL", e2e_settings.database_url)
    monkeypatch.setenv("TEXTLSTM_BROKER_URL", own_redis.url)
    monkeypatch.setenv("TEXTLSTM_QUEUE", e2e_settings.queue)
    get_settings.cache_clear()
    yield e2e_settings.model_copy(update={"broker_url": own_redis.url})
    get_settings.cache_clear()


def write_input(path: Path, rows: list[str]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text"])
        w.writerows([[t] for t in rows])
    return path


@PG
def test_redis_restart_without_persistence_loses_the_queue_and_requeue_recovers(
    topics: dict,
    cli_env: Settings,
    worker_env: dict[str, str],
    tmp_path: Path,
    session_factory: sessionmaker[Session],
) -> None:
    from textlstm.client import Client

    volatile = OwnRedis(tmp_path / "volatile", appendonly=False).start()
    settings = cli_env.model_copy(update={"broker_url": volatile.url})
    fleet = Fleet({**worker_env, "TEXTLSTM_BROKER_URL": volatile.url}, tmp_path)
    try:
        inputs = texts(300, seed=130)
        job = Client(settings.model_copy(update={"message_max_items": 10})).submit(
            inputs, model="topics", record_job=True
        )
        volatile.kill()  # no AOF, no RDB: the 30 queued messages are gone
        volatile.start()
        c = volatile.client()
        assert c.llen(settings.queue) == 0
        runner = CliRunner()
        env = {"TEXTLSTM_BROKER_URL": volatile.url}
        reaped = runner.invoke(cli, ["jobs", "reap", "--older-than", "0s", "--json"], env=env)
        assert reaped.exit_code == 0, reaped.output
        assert f'"job_id": "{job}"' in reaped.output and '"lost": 300' in reaped.output
        lost = runner.invoke(cli, ["jobs", "requeue", str(job)], env=env)
        assert lost.exit_code == 1 and "300 lost (no copy in the broker" in lost.output
        src = write_input(tmp_path / "input.csv", inputs)
        ok = runner.invoke(cli, ["jobs", "requeue", str(job), "--input", str(src)], env=env)
        assert ok.exit_code == 0 and "300 re-sent from --input" in ok.output, ok.output
        again = runner.invoke(cli, ["jobs", "requeue", str(job), "--input", str(src)], env=env)
        assert "300 waiting in a queue (left alone)" in again.output, "idempotent: nothing sent"
        fleet.start()
        wait_job(settings, job, timeout=120)
        assert_exactly_once(session_factory, {job: 300})
        done = runner.invoke(cli, ["jobs", "requeue", str(job)], env=env)
        assert "every item has a row; nothing to requeue" in done.output
        assert_queue_drained(c, [settings.queue])
        c.close()
    finally:
        fleet.close()
        volatile.kill()


@PG
def test_unacked_messages_of_a_killed_worker_are_requeued_at_once(
    topics: dict,
    cli_env: Settings,
    worker_env: dict[str, str],
    own_redis: OwnRedis,
    tmp_path: Path,
    session_factory: sessionmaker[Session],
) -> None:
    from textlstm.client import Client

    # Production visibility timeout: without requeue these would wait 10 minutes.
    env = {**worker_env, "TEXTLSTM_BROKER_URL": own_redis.url}
    env["TEXTLSTM_WORKER_VISIBILITY_TIMEOUT_S"] = "600"
    fleet = Fleet(env, tmp_path)
    try:
        holder = fleet.start(
            "--batch-max-items", "1000", "--batch-max-wait-ms", "60000", "--batch-idle-ms", "60000"
        )
        # Recorded by the producer (database URL set): reap sees only jobs that have a row.
        job = Client(cli_env.model_copy(update={"message_max_items": 4})).submit(
            texts(200, seed=131), model="topics", record_job=True
        )
        c = own_redis.client()
        wait_until(lambda: c.hlen("unacked") == 50, 60, "50 messages held")
        fleet.signal(holder, signal.SIGKILL)
        holder.proc.wait(10)  # type: ignore[union-attr]
        runner = CliRunner()
        out = runner.invoke(cli, ["jobs", "reap", "--older-than", "0s"])
        assert "200 re-sent from unacked broker copies" in out.output
        assert "report only" in out.output
        out = runner.invoke(cli, ["jobs", "reap", "--older-than", "0s", "--requeue"])
        assert out.exit_code == 0 and "200 re-sent from unacked broker copies" in out.output
        fleet.start()
        wait_job(cli_env, job, timeout=120)
        assert_exactly_once(session_factory, {job: 200})
        c.close()
    finally:
        fleet.close()


def test_decode_refuses_anything_but_json_and_durations_parse() -> None:
    import base64
    import pickle

    from textlstm.errors import ValidationError
    from textlstm.ops.recovery import decode_payload, parse_duration
    from textlstm.wire.messages import Limits

    body = base64.b64encode(pickle.dumps(([{"x": 1}], {}, {}))).decode()
    payload = {
        "body": body,
        "content-type": "application/x-python-serialize",
        "properties": {"body_encoding": "base64"},
    }
    assert decode_payload(payload, Limits()) is None
    assert decode_payload({**payload, "content-type": "application/json"}, Limits()) is None
    assert parse_duration("90s").total_seconds() == 90
    assert parse_duration("15m").total_seconds() == 900
    assert parse_duration("2h").total_seconds() == 7200
    assert parse_duration("1d").days == 1 and parse_duration("30").total_seconds() == 30
    with pytest.raises(ValidationError):
        parse_duration("soon")
