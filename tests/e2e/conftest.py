"""Real worker subprocesses against the real Redis and databases.

`WorkerProc` starts `textlstm-admin worker` in its own process group (so a test can SIGKILL
the supervisor and its Celery process together, like a machine dying), with one torch thread
and short broker timeouts so redelivery after a kill takes seconds, not the production 10 min.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from textlstm.settings import Settings

BATCH_RE = re.compile(r"batch size=(\d+) messages=(\d+)")


class WorkerProc:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0

    def start(self, *extra: str, timeout: float = 60.0) -> WorkerProc:
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        argv = [
            sys.executable,
            "-c",
            "from textlstm.cli import cli; cli()",
            "worker",
            "--concurrency",
            "1",
            "--threads",
            "1",
            "--device",
            "cpu",
            *extra,
        ]
        self.proc = subprocess.Popen(
            argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.wait_for(lambda text: " ready." in text, timeout, "worker ready")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[self._offset :]

    def wait_for(self, cond: Callable[[str], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond(self.log()):
                return
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited ({self.proc.returncode}):\n{self.log()}")
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log()[-4000:]}")

    def batch_sizes(self) -> list[int]:
        return [int(m.group(1)) for m in BATCH_RE.finditer(self.log())]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.terminate(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


@contextmanager
def paused(*workers: WorkerProc) -> Iterator[None]:
    """The workers' process groups stopped (SIGSTOP) for the block, then resumed: a job queued
    or an alias moved meanwhile lands mid-run however fast the workers are."""
    for w in workers:
        assert w.proc is not None
        os.killpg(w.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for w in workers:
            assert w.proc is not None
            os.killpg(w.proc.pid, signal.SIGCONT)


@pytest.fixture
def e2e_settings(db_url: str, redis_url: str, queue_name: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url,
        broker_url=redis_url,
        queue=queue_name,
        model_cache_dir=tmp_path / "cache",
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def worker_env(e2e_settings: Settings, tmp_path: Path) -> dict[str, str]:
    s = e2e_settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEXTLSTM_")}
    env.update(
        TEXTLSTM_DATABASE_URL=s.database_url,
        TEXTLSTM_BROKER_URL=s.broker_url,
        TEXTLSTM_QUEUE=s.queue,
        TEXTLSTM_MODEL_CACHE_DIR=str(tmp_path / "worker-cache"),
        TEXTLSTM_WORKER_VISIBILITY_TIMEOUT_S="4",
        TEXTLSTM_WORKER_RESTORE_INTERVAL_S="1",
        TEXTLSTM_WORKER_ALIAS_REFRESH_S="0.5",
        TEXTLSTM_WORKER_DB_RETRY_INITIAL_S="0.2",
        TEXTLSTM_WORKER_DB_RETRY_MAX_S="1",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def workers(worker_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., WorkerProc]]:
    started: list[WorkerProc] = []

    def start(*extra: str, env: dict[str, str] | None = None) -> WorkerProc:
        w = WorkerProc({**worker_env, **(env or {})}, tmp_path / "worker.log")
        started.append(w)
        return w.start(*extra)

    yield start
    for w in started:
        w.close()


@pytest.fixture
def topics(session_factory: sessionmaker[Session], tiny_bundle: Path, tmp_path: Path) -> dict:
    """topics@1 (production) and topics@2 (same weights, another bundle): version ids."""
    from textlstm.classifier.bundle import METRICS, bundle_files, dump_json, write_bundle
    from textlstm.store.registry import register_bundle

    other = tmp_path / "v2"
    files = {k: v for k, v in bundle_files(tiny_bundle).items() if k != "manifest.json"}
    files[METRICS] = dump_json({"validation": {"accuracy": 0.5}})
    write_bundle(other, files)
    with session_factory.begin() as s:
        v1, _ = register_bundle(session=s, path=tiny_bundle, name="topics", aliases=["production"])
        v2, _ = register_bundle(session=s, path=other, name="topics")
        return {1: v1.id, 2: v2.id}


def submit(
    settings: Settings, texts: list[Any], *, per_message: int = 256, model: str = "topics"
) -> uuid.UUID:
    from textlstm.client import Client

    s = settings.model_copy(update={"message_max_items": per_message})
    return Client(s).submit(texts, model=model, record_job=False)


def wait_job(settings: Settings, job: uuid.UUID, timeout: float = 90.0) -> Any:
    from textlstm.client import Client

    return Client(settings).wait(job, timeout=timeout, poll_interval=0.2)


def stored(session_factory: sessionmaker[Session], job: uuid.UUID) -> list[Any]:
    from textlstm.store.models import Prediction

    with session_factory() as s:
        return list(
            s.scalars(
                select(Prediction).where(Prediction.job_id == job).order_by(Prediction.item_index)
            )
        )
