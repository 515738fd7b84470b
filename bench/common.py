"""What the end-to-end benchmarks share: their own redis-server, a throwaway PostgreSQL
database, a small model trained once, worker processes and their memory.

Each benchmark owns its services so that a run measures only itself and leaves nothing behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from textlstm.testing.ports import free_port
from textlstm.testing.postgres import throwaway_database
from textlstm.testing.processes import LoggedProcess
from textlstm.testing.redis_server import OwnRedis

__all__ = ["free_port", "throwaway_database"]  # re-exported for the benchmark scripts

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


@contextmanager
def own_redis(workdir: Path, *, append_only: bool) -> Iterator[str]:
    """A redis-server on a free port for the duration; yields its URL."""
    with OwnRedis(workdir, appendonly=append_only, appendfsync="everysec") as server:
        yield server.url


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


class Process(LoggedProcess):
    """A benchmark's service process in its own process group, logging to a file."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], log_path: Path) -> None:
        super().__init__(log_path)
        self.spawn(argv, env, cwd=ROOT)

    def rss_kb(self) -> int:
        return group_rss_kb(self.pid)


def scratch_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any TEXTLSTM_ setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEXTLSTM_")}
    env.update(PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT), **extra)
    return env
