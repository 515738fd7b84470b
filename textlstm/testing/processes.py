"""Processes a test or benchmark starts: each in its own process group (so a SIGKILL takes a
supervisor and its children together, like a machine dying), its output appended to a log file.

`WorkerProcess` is `textlstm-admin worker` with one process, one torch thread and the CPU: the
shape every end-to-end test and fault test runs, started and restarted on one log. It writes
its per-batch records (`textlstm.serving.stages`) to a stats folder next to that log, and
`batches()` reads them: tests count batches from those records, never from the log's wording.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from textlstm.serving.stages import BatchStats, StatsTail

#: The admin CLI run by this interpreter (no console script needed on PATH).
CLI = (sys.executable, "-c", "from textlstm.cli import cli; cli()")
#: What a worker writes once it takes work.
READY = " ready."


class LoggedProcess:
    """A process in its own group; `log()` is its output since the last `spawn`."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0

    def spawn(
        self, argv: Sequence[str], env: dict[str, str], cwd: Path | None = None
    ) -> LoggedProcess:
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                list(argv), env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def log(self, offset: int = 0) -> str:
        """Output since the last spawn, from `offset` characters into it."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[self._offset :][offset:]

    def log_size(self) -> int:
        return len(self.log())

    def wait_for(
        self, cond: str | Callable[[str], bool], timeout: float, what: str = "", count: int = 1
    ) -> None:
        """Until the log holds `cond` (`count` times) or `cond(log)` is true; AssertionError
        with the log's tail if the process exits first or `timeout` passes."""
        test = cond if callable(cond) else (lambda text: text.count(cond) >= count)
        what = what or (cond if isinstance(cond, str) else "a log condition")
        deadline = time.monotonic() + timeout
        while not test(self.log()):
            assert self.proc is not None, "not started"
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.log_path.name}: exited ({self.proc.returncode}) before {what!r}:\n"
                    f"{self.log()[-4000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.log_path.name}: timed out after {timeout:g}s waiting for {what!r}:\n"
                    f"{self.log()[-4000:]}"
                )
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, sig: signal.Signals) -> None:
        os.killpg(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL to the whole group: nothing runs a shutdown path."""
        self.signal_group(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(30)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM to the leader alone (a supervisor forwards it); its exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM to the whole group, then SIGKILL if it is not gone within `timeout`."""
        if not self.alive():
            return
        self.signal_group(signal.SIGTERM)
        try:
            assert self.proc is not None
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def close(self) -> None:
        """Stop it however it is: resumed if paused, terminated, killed if that hangs."""
        if not self.alive():
            return
        self.signal_group(signal.SIGCONT)
        try:
            self.terminate(15)
        except subprocess.TimeoutExpired:
            self.kill()


class WorkerProcess(LoggedProcess):
    """`textlstm-admin worker` (one process, one thread, CPU) configured by `env`.

    Its batch records go to `stats_dir` (default: `<log name>.stats` beside the log, so
    processes started on one log share one folder, as they share the log).
    """

    def __init__(self, env: dict[str, str], log_path: Path, stats_dir: Path | None = None) -> None:
        super().__init__(log_path)
        self.stats_dir = stats_dir or log_path.with_name(f"{log_path.stem}.stats")
        self.env = {**env, "TEXTLSTM_WORKER_STATS_DIR": str(self.stats_dir)}
        self._stats: StatsTail | None = None
        self._seen: list[BatchStats] = []

    def start(self, *extra: str, timeout: float = 60.0) -> WorkerProcess:
        argv = [*CLI, "worker", "--concurrency", "1", "--threads", "1", "--device", "cpu", *extra]
        self._stats, self._seen = StatsTail(self.stats_dir), []
        self.spawn(argv, self.env)
        self.wait_for(READY, timeout, "worker ready")
        return self

    def batches(self) -> list[BatchStats]:
        """The batch records written to the stats folder since the last `start` (like `log()`,
        by any process on that folder)."""
        if self._stats is not None:
            self._seen.extend(self._stats.new())
        return list(self._seen)


@contextmanager
def paused(*procs: LoggedProcess) -> Iterator[None]:
    """The processes' groups stopped (SIGSTOP) for the block, then resumed: a job queued or an
    alias moved meanwhile lands mid-run however fast the workers are."""
    for p in procs:
        p.signal_group(signal.SIGSTOP)
    try:
        yield
    finally:
        for p in procs:
            p.signal_group(signal.SIGCONT)


class GatewayProcess(LoggedProcess):
    """`textlstm-admin serve-api` on a loopback port, configured by `env` (the api extra)."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int) -> None:
        super().__init__(log_path)
        self.env = env
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *extra: str, timeout: float = 60.0) -> GatewayProcess:
        argv = [*CLI, "serve-api", "--host", "127.0.0.1", "--port", str(self.port), *extra]
        self.spawn(argv, self.env)
        # The port itself, not a log line: `--log-level warning` hides uvicorn's start-up line.
        self.wait_for(lambda _: self.listening(), timeout, "gateway listening")
        return self

    def listening(self) -> bool:
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False
