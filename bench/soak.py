"""Soak: push many items through real workers for a long time while killing a worker every
minute, then count what was lost or stored twice and how worker memory behaved.

    python bench/soak.py                       # >= 200,000 items, 2 workers, >= 10 minutes
    python bench/soak.py --quick               # 6,000 items, ~90 s, a kill every 30 s
    python bench/soak.py --items 300000 --minutes 15 --kill-every 60 --workers 2

Everything it uses is its own: a redis-server on a free port (append-only, fsync every second,
as in docker-compose.yml), a fresh PostgreSQL database on `--pg-admin-url` (dropped at the end
unless --keep), and a small model trained once into runs/soak-model (`train --dry-run` on the
bundled sample data; throughput is not the point here). Producers submit jobs at a steady rate
spread over the run; every `--kill-every` seconds one worker (supervisor and Celery process
together) is SIGKILLed and started again.

At the end it waits for the queue to drain; nothing is ever resent. A message a killed worker
had taken is in the unacked hash (worker.transport pops and records it in one step) and comes
back after the visibility timeout. If rows stop arriving for --stall-s seconds after the last
submit, the run ends there and whatever is missing counts as lost. "Lost" must be 0;
"duplicates" are rows beyond one per item (must be 0: the primary key forbids them, and job
counters are checked against the rows). Worker RSS is sampled every 10 s per
worker incarnation; growth is measured from the end of warm-up (first sample after 60 s of
its life) to its last sample, over incarnations that lived at least --min-life seconds.
Results: bench/results/soak.{md,json}.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS, ROOT, free_port, group_rss_kb  # noqa: E402 - a script

BUNDLE = ROOT / "runs" / "soak-model"


def ensure_bundle() -> Path:
    if not (BUNDLE / "manifest.json").exists():
        subprocess.run(
            [sys.executable, "-c", "from textlstm.cli import cli; cli()", "train",
             str(ROOT / "examples/data/news_train.csv"), "--out", str(BUNDLE), "--overwrite",
             "--dry-run", "--seed", "1"],
            check=True,
        )  # fmt: skip
    return BUNDLE


def sample_texts() -> list[str]:
    with (ROOT / "examples/data/news_test.csv").open(newline="") as f:
        return [row["text"] for row in csv.DictReader(f)]


@dataclass
class Incarnation:
    proc: subprocess.Popen[bytes]
    started: float
    rss: list[tuple[float, int]] = field(default_factory=list)


class Workers:
    def __init__(self, env: dict[str, str], logdir: Path, n: int) -> None:
        self.env, self.logdir = env, logdir
        self.slots: list[Incarnation] = []
        self.history: list[Incarnation] = []
        for i in range(n):
            self.slots.append(self._start(i))

    def _start(self, slot: int) -> Incarnation:
        log = (self.logdir / f"worker-{slot}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-c", "from textlstm.cli import cli; cli()", "worker",
             "--concurrency", "1", "--threads", "1", "--device", "cpu"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        inc = Incarnation(proc, time.monotonic())
        self.history.append(inc)
        return inc

    def kill_and_restart(self, slot: int) -> None:
        inc = self.slots[slot]
        os.killpg(inc.proc.pid, signal.SIGKILL)
        inc.proc.wait(30)
        self.slots[slot] = self._start(slot)

    def sample_rss(self) -> None:
        now = time.monotonic()
        for inc in self.slots:
            inc.rss.append((now - inc.started, group_rss_kb(inc.proc.pid)))

    def stop(self) -> None:
        for inc in self.slots:
            if inc.proc.poll() is None:
                inc.proc.send_signal(signal.SIGTERM)
        for inc in self.slots:
            try:
                inc.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(inc.proc.pid, signal.SIGKILL)


def main() -> None:  # noqa: C901 - a linear script
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--kill-every", type=float, default=60.0)
    ap.add_argument("--job-size", type=int, default=2000)
    ap.add_argument("--per-message", type=int, default=16)
    ap.add_argument("--min-life", type=float, default=90.0)
    ap.add_argument("--stall-s", type=float, default=120.0, help="give up after no progress")
    ap.add_argument("--max-rss-growth", type=float, default=10.0, help="percent, fails above")
    ap.add_argument(
        "--pg-admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    ap.add_argument("--quick", action="store_true", help="6,000 items, ~90 s, a kill every 30 s")
    ap.add_argument("--keep", action="store_true", help="keep the database and logs")
    ap.add_argument("--out", type=Path, default=RESULTS / "soak")
    args = ap.parse_args()
    if args.quick:
        args.items, args.minutes, args.kill_every, args.min_life = 6000, 1.5, 30.0, 40.0
        args.job_size = 500
        if args.out == RESULTS / "soak":
            args.out = RESULTS / "soak_quick"

    from textlstm.client import Client
    from textlstm.settings import Settings
    from textlstm.store.db import make_engine, make_session_factory
    from textlstm.store.jobs import unfinished_jobs
    from textlstm.store.migrate import upgrade
    from textlstm.store.registry import register_bundle
    from textlstm.store.results import count_predictions
    from textlstm.testing.postgres import create_database, drop_database

    work = Path(tempfile.mkdtemp(prefix="textlstm-soak-"))
    db_url = create_database(args.pg_admin_url, "textlstm_soak")
    port = free_port()
    redis_proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(work),
         "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    broker = f"redis://127.0.0.1:{port}/0"
    settings = Settings(
        database_url=db_url, broker_url=broker, queue="soak", message_max_items=args.per_message,
        _env_file=None,  # type: ignore[call-arg]
    )  # fmt: skip
    workers: Workers | None = None
    engine = None
    try:
        upgrade(db_url)
        engine = make_engine(db_url)
        factory = make_session_factory(engine)
        with factory.begin() as s:
            register_bundle(session=s, path=ensure_bundle(), name="soak", aliases=["production"])
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEXTLSTM_")}
        env.update(
            TEXTLSTM_DATABASE_URL=db_url, TEXTLSTM_BROKER_URL=broker, TEXTLSTM_QUEUE="soak",
            TEXTLSTM_MODEL_CACHE_DIR=str(work / "cache"),
            TEXTLSTM_WORKER_VISIBILITY_TIMEOUT_S="30", TEXTLSTM_WORKER_RESTORE_INTERVAL_S="2",
            OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
        )  # fmt: skip
        workers = Workers(env, work, args.workers)
        pool = sample_texts()
        client = Client(settings)
        jobs: dict[uuid.UUID, list[str]] = {}
        duration = args.minutes * 60
        n_jobs = max(1, -(-args.items // args.job_size))
        t0 = time.monotonic()
        stop = threading.Event()

        def produce() -> None:
            for j in range(n_jobs):
                size = min(args.job_size, args.items - j * args.job_size)
                texts = [pool[(j * args.job_size + i) % len(pool)] for i in range(size)]
                jid = client.submit(texts, model="soak", record_job=True)
                jobs[jid] = texts
                # A steady rate: job j is due at j/n_jobs of the way through the run.
                due = t0 + duration * (j + 1) / n_jobs
                while not stop.is_set() and time.monotonic() < due:
                    time.sleep(0.2)

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()

        def rows() -> int:
            with factory() as s:
                return count_predictions(session=s)

        timeline: list[dict[str, float]] = []
        kills, next_kill, next_sample, victim = 0, t0 + args.kill_every, t0, 0
        last_rows, last_change = -1, time.monotonic()
        while True:
            now = time.monotonic()
            if now >= next_sample:
                workers.sample_rss()
                r = rows()
                timeline.append({"t": round(now - t0, 1), "rows": r})
                print(f"t={now - t0:6.0f}s rows={r:,} kills={kills}", flush=True)
                if r != last_rows:
                    last_rows, last_change = r, now
                next_sample = now + 10
            if now >= next_kill and (producer.is_alive() or now - t0 < duration):
                workers.kill_and_restart(victim)
                kills, victim, next_kill = (
                    kills + 1,
                    (victim + 1) % args.workers,
                    now + args.kill_every,
                )
            if not producer.is_alive() and last_rows >= sum(len(t) for t in jobs.values()):
                break
            if not producer.is_alive() and now - last_change > args.stall_s:
                print(f"no progress for {args.stall_s:g} s: stopping, counting what is missing")
                break
            time.sleep(0.5)
        elapsed = time.monotonic() - t0
        workers.sample_rss()

        with factory() as s:
            total_rows = rows()
            bad_jobs = [str(j) for j in unfinished_jobs(session=s)]
        submitted = sum(len(t) for t in jobs.values())
        logs = "".join(p.read_text(errors="replace") for p in work.glob("worker-*.log"))
        redelivered_dupes = sum(
            int(x.split("=")[1]) for x in logs.split() if x.startswith("duplicates=")
        )
        growth = []
        for inc in workers.history:
            life = inc.rss[-1][0] if inc.rss else 0
            warm = [kb for age, kb in inc.rss if age >= min(60.0, args.min_life / 2)]
            if life >= args.min_life and len(warm) >= 2 and warm[0] > 0:
                growth.append(round(100.0 * (warm[-1] - warm[0]) / warm[0], 2))
        per_min = []
        for a, b in zip(timeline, timeline[1:], strict=False):
            if b["t"] > a["t"]:
                per_min.append(
                    {
                        "t": b["t"],
                        "items_per_s": round((b["rows"] - a["rows"]) / (b["t"] - a["t"]), 1),
                    }
                )
        result = {
            "items_submitted": submitted,
            "rows": total_rows,
            "lost": submitted - total_rows,
            "duplicates": max(0, total_rows - submitted),
            "jobs": len(jobs),
            "jobs_inconsistent": bad_jobs,
            "redelivered_items_stored_once": redelivered_dupes,
            "kills": kills,
            "workers": args.workers,
            "elapsed_s": round(elapsed, 1),
            "mean_items_per_s": round(total_rows / elapsed, 1),
            "rss_growth_pct_after_warmup": growth,
            "throughput": per_min,
            "cpu_note": f"{os.cpu_count()} CPU(s), shared with other work during the run",
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(render(result, args))
        print(json.dumps({k: v for k, v in result.items() if k != "throughput"}, indent=2))
        too_much = [g for g in growth if g > args.max_rss_growth]
        if result["lost"] or result["duplicates"] or bad_jobs or too_much:
            raise SystemExit(1)
    finally:
        if workers is not None:
            workers.stop()
        redis_proc.terminate()
        redis_proc.wait(30)
        if engine is not None:
            engine.dispose()
        if not args.keep:
            drop_database(args.pg_admin_url, db_url)


def render(r: dict, args: argparse.Namespace) -> str:
    growth = r["rss_growth_pct_after_warmup"]
    lines = [
        f"# Soak: {r['items_submitted']:,} items, {r['workers']} workers, "
        f"{r['elapsed_s'] / 60:.1f} min, a SIGKILL every {args.kill_every:g} s",
        "",
        f"`python bench/soak.py{' --quick' if args.quick else ''}` ({r['cpu_note']}). Nothing is"
        " resent: a killed worker's messages come back from the unacked hash.",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| items submitted | {r['items_submitted']:,} |",
        f"| rows stored | {r['rows']:,} |",
        f"| **lost** (missing at the end) | **{r['lost']}** |",
        f"| **duplicates** (rows beyond one per item) | **{r['duplicates']}** |",
        f"| jobs whose counters disagree or not done | {len(r['jobs_inconsistent'])} |",
        f"| worker kills (SIGKILL) | {r['kills']} |",
        "| redelivered items found already stored (skipped) | "
        f"{r['redelivered_items_stored_once']:,} |",
        f"| mean throughput | {r['mean_items_per_s']} items/s |",
        "| worker RSS growth after warm-up, per incarnation (%) | "
        f"{growth or 'none lived long enough'} |",
        "",
        f"Producers offer a steady {r['items_submitted'] / (args.minutes * 60):.0f} items/s"
        f" ({args.minutes:g} minutes of submissions), well under what two workers can take, so"
        " throughput follows the offered rate; a kill shows as a dip and a catch-up.",
        "",
        "Throughput over time (items/s per 10 s sample):",
        "",
        "| t (s) | items/s |",
        "|---:|---:|",
        *[f"| {p['t']:.0f} | {p['items_per_s']} |" for p in r["throughput"]],
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
