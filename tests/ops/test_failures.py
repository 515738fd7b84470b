"""Item 7's Redis claims, checked: with append-only persistence (the compose setting) queued
jobs survive a Redis restart, and a worker whose Redis restarts mid-run reconnects and finishes
the job with every item stored once (after resending the job if a message in flight at the
instant of the outage was lost in kombu; see below). Uses its own redis-server on a free port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy.orm import Session, sessionmaker

from tests.e2e.conftest import WorkerProc, stored, submit, wait_job
from tests.e2e.test_worker import texts
from tests.ops.test_fleet import host_env
from textlstm.client import Client
from textlstm.settings import Settings

pytestmark = [
    pytest.mark.parametrize("db_url", ["postgresql"], indirect=True),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]


class OwnRedis:
    """A redis-server with `--appendonly yes` in a temporary directory; restartable."""

    def __init__(self, workdir: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: Redis flushes the AOF and exits
            self.proc.wait(10)

    def client(self) -> Any:
        return redis.Redis.from_url(self.url)


def wait_settled(settings: Settings, job: Any, quiet_s: float = 10.0, limit_s: float = 90.0) -> Any:
    """The job's status once it is finished or has made no progress for `quiet_s` (longer than
    the test's visibility timeout + restore interval + a worker restart)."""
    from textlstm.client import Client

    client = Client(settings)
    last, since, start = -1, time.monotonic(), time.monotonic()
    while True:
        st = client.status(job)
        if st.finished:
            return st
        if st.done != last:
            last, since = st.done, time.monotonic()
        if time.monotonic() - since > quiet_s or time.monotonic() - start > limit_s:
            return st
        time.sleep(0.2)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    r = OwnRedis(tmp_path)
    r.start()
    yield r
    r.stop()


def test_queued_jobs_survive_a_redis_restart_and_a_worker_rides_one_out(
    topics: dict,
    e2e_settings: Settings,
    session_factory: sessionmaker[Session],
    own_redis: OwnRedis,
    tmp_path: Path,
) -> None:
    settings = e2e_settings.model_copy(update={"broker_url": own_redis.url})
    queued = submit(settings, texts(400, seed=51), per_message=4)  # 100 messages, no worker yet
    own_redis.stop()
    own_redis.start()
    c = own_redis.client()
    assert c.llen(settings.queue) == 100, "AOF kept every queued message"
    c.close()

    w = WorkerProc(host_env(settings, tmp_path / "cache"), tmp_path / "worker.log")
    try:
        w.start("--batch-max-items", "16")
        assert wait_job(settings, queued).ok == 400
        inputs = texts(1500, seed=52)
        running = submit(settings, inputs, per_message=2)
        w.wait_for(lambda log: log.count("batch size=") >= 20, 30, "the second job under way")
        assert len(stored(session_factory, running)) < 1500, "the restart must land mid-run"
        own_redis.stop()  # Redis goes away mid-run...
        time.sleep(1.0)
        own_redis.start()  # ...and comes back with its AOF
        st = wait_settled(settings, running)
        if st.done < 1500:
            # kombu's Redis transport pops a message (BRPOP) and records it as unacked in a
            # second round trip; a message popped in the instant Redis went away exists only
            # in the dead connection's buffer. Seen in 6 of 16 runs here, always one message:
            # the remedy is to send the same job id again (only missing items are stored).
            assert 1500 - st.done <= 4, f"more than one in-flight message lost: {st}"
            again = settings.model_copy(update={"message_max_items": 2})
            Client(again).submit(inputs, model="topics", job_id=running, record_job=False)
            st = wait_job(settings, running, timeout=60)
        assert (st.status, st.ok, st.errors) == ("done", 1500, 0)
        assert len(stored(session_factory, running)) == 1500
        assert w.alive()
    finally:
        w.close()
