"""What the end-to-end benchmarks share: their own redis-server, a throwaway PostgreSQL
database, a small model trained once, worker processes and their memory.

Each benchmark owns its services so that a run measures only itself and leaves nothing behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CLI = [sys.executable, "-c", "from textlstm.cli import cli; cli()"]
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def shown(value: object) -> str:
    """A value as a report shows it: paths from the repository root, never the machine's."""
    if isinstance(value, Path):
        path = value.resolve()
        if path.is_relative_to(ROOT):
            return str(path.relative_to(ROOT))
        if path.is_relative_to(ROOT.parent):
            return str(Path("..") / path.relative_to(ROOT.parent))
        return path.name
    return str(value)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def own_redis(workdir: Path, *, append_only: bool) -> Iterator[str]:
    """A redis-server on a free port for the duration; yields its URL."""
    port = free_port()
    persistence = ["--appendonly", "yes", "--appendfsync", "everysec"] if append_only else []
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
         "--save", "", *persistence],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


@contextmanager
def throwaway_database(admin_url: str, prefix: str, *, keep: bool = False) -> Iterator[str]:
    """A fresh PostgreSQL database, migrated; dropped at the end unless `keep`."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from textlstm.store.migrate import upgrade

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        if not keep:
            with admin.connect() as c:
                c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


#: `textlstm-admin train` flags of the reference model every serving benchmark uses:
#: embedding 100 -> one-direction LSTM 128, last-state pooling.
REFERENCE_SHAPE = ("--embedding-dim", "100", "--hidden-size", "128", "--unidirectional",
                   "--pooling", "last", "--no-embedding-skip")  # fmt: skip


def repeated_texts(csv_path: Path, n: int) -> list[str]:
    """The non-blank `text` column of a CSV, repeated to `n` texts."""
    import csv

    with csv_path.open(newline="", encoding="utf-8") as fh:
        base = [r["text"] for r in csv.DictReader(fh) if (r.get("text") or "").strip()]
    if not base:
        raise SystemExit(f"{csv_path}: no texts in its text column")
    return [base[i % len(base)] for i in range(n)]


def train_once(out: Path, train_csv: Path, *extra: str) -> Path:
    """Train a bundle into `out` unless one is there (benchmarks measure serving, not this)."""
    if not (out / "manifest.json").exists():
        subprocess.run(
            [*CLI, "train", str(train_csv), "--out", str(out), "--overwrite", *extra], check=True
        )
    return out


def group_rss_kb(pgid: int) -> int:
    """Summed VmRSS of every process in a process group (supervisor + Celery processes)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total


def cpu_snapshot(worker_pgids: set[int]) -> dict[str, float]:
    """CPU seconds used so far: the whole machine (/proc/stat, all cores, every process that
    ever ran) and the live processes of the workers, PostgreSQL and Redis (/proc/PID/stat).

    The difference of two snapshots splits a run's CPU; what is in "machine" but none of the
    others is the benchmark itself, its producers and anything else on the host.
    """
    tick = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    out = {"machine": (sum(fields[:8]) - idle) / tick, "workers": 0.0, "postgres": 0.0,
           "redis": 0.0}  # fmt: skip
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat.rsplit(")", 1)[1].split()
        used = (int(rest[11]) + int(rest[12])) / tick  # utime + stime
        if int(rest[2]) in worker_pgids:
            out["workers"] += used
        elif comm.startswith("postgres"):
            out["postgres"] += used
        elif comm.startswith("redis-server"):
            out["redis"] += used
    return out


def cpu_split(before: dict[str, float], after: dict[str, float], wall_s: float) -> dict[str, float]:
    """Cores used on average during `wall_s`, per consumer (see cpu_snapshot)."""
    used = {k: max(0.0, after[k] - before[k]) / wall_s for k in before}
    used["bench+producers+other"] = max(
        0.0, used["machine"] - used["workers"] - used["postgres"] - used["redis"]
    )
    return {k: round(v, 2) for k, v in used.items()}


class Process:
    """A benchmark's service process in its own process group, logging to a file."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                list(argv), env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def log(self, offset: int = 0) -> str:
        return self.log_path.read_text(errors="replace")[offset:]

    def log_size(self) -> int:
        return len(self.log())

    def wait_for(self, text: str, timeout: float, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while self.log().count(text) < count:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.log_path.name} exited:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.log_path.name}: no {text!r} after {timeout:g} s")
            time.sleep(0.1)

    def rss_kb(self) -> int:
        return group_rss_kb(self.proc.pid)

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self, timeout: float = 60) -> None:
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def scratch_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any TEXTLSTM_ setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEXTLSTM_")}
    env.update(PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT), **extra)
    return env
