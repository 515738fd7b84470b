"""Several worker processes for one fault test, each with its own log file."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.e2e.conftest import WorkerProc
from textlstm.settings import Settings


class Fleet:
    """Start, kill, stop and resume worker processes (each a `textlstm-admin worker -c 1`
    in its own process group, so a kill takes the supervisor and its Celery child together)."""

    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.env = env
        self.logdir = logdir
        self.procs: list[WorkerProc] = []

    def start(self, *extra: str) -> WorkerProc:
        w = WorkerProc(dict(self.env), self.logdir / f"worker-{len(self.procs)}.log")
        self.procs.append(w)
        return w.start(*extra, timeout=120)

    def signal(self, w: WorkerProc, sig: signal.Signals) -> None:
        assert w.proc is not None
        os.killpg(w.proc.pid, sig)

    def logs(self) -> str:
        return "".join(p.log_path.read_text(errors="replace") for p in self.procs)

    def close(self) -> None:
        for w in self.procs:
            if w.alive():
                self.signal(w, signal.SIGCONT)
                w.close()


def row_count(session_factory: sessionmaker[Session], job: uuid.UUID) -> int:
    from textlstm.store.models import Prediction

    with session_factory() as s:
        return s.scalar(select(func.count()).where(Prediction.job_id == job)) or 0


def wait_until(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := cond():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def assert_nothing_lost(
    settings: Settings,
    session_factory: sessionmaker[Session],
    jobs: dict[uuid.UUID, int],
    inputs: dict[uuid.UUID, list[str]],
    stall_s: float = 20.0,
) -> None:
    """Wait until every job has all its rows; fail if nothing was stored for `stall_s` (the
    visibility timeout is 4 s, the restore interval 1 s) while items are missing, saying where
    the missing items are (a queue, an unacked copy, or nowhere: lost by the broker).

    Until worker.transport, kombu's BRPOP lost a message now and then at a SIGKILL and the
    fault tests resent the job; the atomic pop is what makes this a hard check."""
    from textlstm.recovery import requeue_job

    deadline = time.monotonic() + 240
    last, changed = -1, time.monotonic()
    while time.monotonic() < deadline:
        counts = {j: row_count(session_factory, j) for j in jobs}
        if all(counts[j] == n for j, n in jobs.items()):
            return
        if sum(counts.values()) != last:
            last, changed = sum(counts.values()), time.monotonic()
        elif time.monotonic() - changed > stall_s:
            break
        time.sleep(0.25)
    where = []
    for job in jobs:
        report = requeue_job(job, settings=settings, input_texts=inputs[job], dry_run=True)
        if report.missing:
            where.append(
                f"job {job}: {report.missing} missing ({report.waiting} queued, "
                f"{report.from_broker} unacked, {report.from_input} in no queue and no unacked "
                "entry: lost by the broker)"
            )
    raise AssertionError("stalled with items missing: " + "; ".join(where))
