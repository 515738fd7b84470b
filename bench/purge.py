"""Retention: `jobs purge` on 200,000 prediction rows of old jobs, while a writer keeps writing.

    python bench/purge.py                               # 200,000 rows, 4 runs (~3 min)
    python bench/purge.py --rows 20000 --out /tmp/purge_quick
    python bench/purge.py --sqlite --out bench/results/purge_sqlite   # the same on SQLite

Each run gets a fresh PostgreSQL database (dropped at the end) holding finished jobs of three
sizes, stored through the workers' own save paths: half of the rows in one big job (deleted in
item-index ranges), a quarter in jobs of 2,500 and a quarter in jobs of 50 (many per
transaction). A writer thread stands in for a worker: it stores a running job's rows in
transactions of 256 throughout, and its commit latencies are recorded before and during the
purge. Then `textlstm.ops.retention.purge` deletes every finished job, with --batch-rows
prediction rows per transaction at most, and each transaction is timed: the longest is the
longest time any row lock was held.

The last run deletes everything in one transaction (store.retention.delete_jobs on all the
ids): what a plain `DELETE ... WHERE finished_at < X` would do, for comparison.
Results: bench/results/purge.{md,json} (and purge_sqlite.{md,json}: there a write transaction
locks the whole database, so the writer waits for each purge transaction; this is where their
length matters most).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from textlstm.ops.retention import purge
from textlstm.store.db import make_engine, make_session_factory
from textlstm.store.jobs import ensure_job, get_job
from textlstm.store.migrate import upgrade
from textlstm.store.models import FINISHED_STATUSES
from textlstm.store.predictions import JobItems, PredictionRecord, save_batch, save_predictions
from textlstm.store.retention import delete_jobs
from textlstm.testing.postgres import analyze, throwaway_database

ROOT = Path(__file__).resolve().parents[1]
SEED_BATCH = 10_000
WRITER_BATCH = 256


def record(i: int) -> PredictionRecord:
    top = 0.5 + (i % 50) / 100
    return PredictionRecord(
        i, "ok", "pos", top, {"pos": top, "neg": 1 - top}, f"doc-{i}", None, 2.0
    )


def seed(factory: Any, rows: int) -> list[uuid.UUID]:
    """Finished jobs holding `rows` rows in all: 1/2 one job, 1/4 in 2,500s, 1/4 in 50s."""
    big = rows // 2
    mid = [2500] * (rows // 4 // 2500)
    small = [50] * ((rows - big - sum(mid)) // 50)
    big += rows - big - sum(mid) - sum(small)  # remainders
    ids: list[uuid.UUID] = []
    for n in [big, *mid]:
        job_id = uuid.uuid4()
        ids.append(job_id)
        with factory.begin() as s:
            ensure_job(session=s, job_id=job_id, model_ref="news@1", expected=n)
        for start in range(0, n, SEED_BATCH):
            batch = [record(i) for i in range(start, min(n, start + SEED_BATCH))]
            with factory.begin() as s:
                save_predictions(session=s, job_id=job_id, records=batch)
    per_txn = SEED_BATCH // 50
    for start in range(0, len(small), per_txn):
        jobs = {uuid.uuid4(): JobItems("news@1", 50, [record(i) for i in range(50)])
                for _ in small[start : start + per_txn]}  # fmt: skip
        ids.extend(jobs)
        with factory.begin() as s:
            save_batch(session=s, jobs=jobs)
    return ids


class Writer(threading.Thread):
    """A worker's write pattern: one running job's rows, 256 per transaction, back to back
    (its own engine), each commit's latency recorded with the time it ended."""

    def __init__(self, url: str, total: int) -> None:
        super().__init__(daemon=True)
        self.engine = make_engine(url)
        self.factory = make_session_factory(engine=self.engine)
        self.job_id = uuid.uuid4()
        self.total = total
        self.stop = threading.Event()
        self.commits: list[tuple[float, float]] = []  # (ended at, seconds)
        self.stored = 0
        with self.factory.begin() as s:
            ensure_job(session=s, job_id=self.job_id, model_ref="news@1", expected=total)

    def run(self) -> None:
        while not self.stop.is_set() and self.stored + WRITER_BATCH < self.total:
            batch = [record(i) for i in range(self.stored, self.stored + WRITER_BATCH)]
            t0 = time.perf_counter()
            with self.factory.begin() as s:
                save_predictions(session=s, job_id=self.job_id, records=batch)
            t1 = time.perf_counter()
            self.commits.append((t1, t1 - t0))
            self.stored += WRITER_BATCH
            time.sleep(0.002)  # a worker spends most of a batch in the model

    def latencies(self, start: float, end: float) -> list[float]:
        return [s for at, s in self.commits if start <= at <= end]


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextmanager
def database(admin_url: str, sqlite: bool) -> Iterator[str]:
    """A fresh, migrated database: PostgreSQL (dropped after) or a SQLite file (removed)."""
    if not sqlite:
        with throwaway_database(admin_url, "textlstm_bench") as url:
            yield url
        return
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        yield url


def one_run(admin_url: str, rows: int, batch_rows: int | None, sqlite: bool) -> dict[str, Any]:
    with database(admin_url, sqlite) as url:
        engine = make_engine(url)
        factory = make_session_factory(engine)
        try:
            t0 = time.perf_counter()
            ids = seed(factory, rows)
            if not sqlite:
                analyze(url)  # a table in use has statistics; a fresh load has none
            seed_s = time.perf_counter() - t0
            cutoff = datetime.now(UTC)
            writer = Writer(url, total=50_000_000)
            writer.start()
            time.sleep(2.0)  # the writer's latencies without a purge
            base_end = time.perf_counter()
            started = time.perf_counter()
            if batch_rows is None:  # one DELETE of everything, as a plain SQL statement would
                with factory.begin() as s:
                    jobs, deleted = delete_jobs(
                        session=s, job_ids=ids, statuses=FINISHED_STATUSES, cutoff=cutoff
                    )
                took = time.perf_counter() - started
                transactions, txn = 1, [took]
            else:
                report = purge(session_factory=factory, cutoff=cutoff, batch_rows=batch_rows)
                took = time.perf_counter() - started
                jobs, deleted = report.jobs, report.predictions
                transactions, txn = report.transactions, report.transaction_s
            ended = time.perf_counter()
            time.sleep(0.5)
            writer.stop.set()
            writer.join()
            with factory() as s:
                kept = get_job(session=s, job_id=writer.job_id)
                assert kept.ok_count == writer.stored, "the writer's job lost rows"
            during = writer.latencies(started, ended + 0.5)
            before = writer.latencies(base_end - 2.0, base_end)
            writer.engine.dispose()
        finally:
            engine.dispose()
    if deleted != rows or jobs != len(ids):
        raise SystemExit(f"purged {jobs} jobs / {deleted} rows, expected {len(ids)} / {rows}")
    return {
        "batch_rows": batch_rows or "all (one transaction)",
        "jobs": jobs,
        "rows": deleted,
        "seconds": round(took, 2),
        "rows_per_s": round(deleted / took),
        "transactions": transactions,
        "txn_p50_ms": round(1000 * statistics.median(txn), 1),
        "txn_max_ms": round(1000 * max(txn), 1),
        "writer_commits_during": len(during),
        "writer_p50_ms_before": round(1000 * pct(before, 0.5), 1),
        "writer_p99_ms_before": round(1000 * pct(before, 0.99), 1),
        "writer_p50_ms_during": round(1000 * pct(during, 0.5), 1),
        "writer_p99_ms_during": round(1000 * pct(during, 0.99), 1),
        "writer_max_ms_during": round(1000 * max(during, default=0.0), 1),
        "seed_s": round(seed_s, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000, help="prediction rows of old jobs")
    ap.add_argument("--batch-rows", default="1000,5000,10000", help="comma list, one run each")
    ap.add_argument("--no-single", action="store_true", help="skip the one-transaction run")
    ap.add_argument("--sqlite", action="store_true", help="a SQLite file instead of PostgreSQL")
    ap.add_argument(
        "--pg-admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "purge")
    args = ap.parse_args()
    plan: list[int | None] = [int(b) for b in args.batch_rows.split(",") if b.strip()]
    if not args.no_single:
        plan.append(None)
    runs = []
    for batch_rows in plan:
        run = one_run(args.pg_admin_url, args.rows, batch_rows, args.sqlite)
        print(json.dumps(run), flush=True)
        runs.append(run)
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s), shared with other work",
        "command": "python bench/purge.py " + " ".join(sys.argv[1:]),
        "rows": args.rows,
        "database": "SQLite (WAL, one file)" if args.sqlite else "PostgreSQL on the same host",
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(render(report))
    print(f"wrote {args.out.with_suffix('.md')}")


def render(r: dict[str, Any]) -> str:
    lines = [
        f"# Retention: purging {r['rows']:,} prediction rows while a writer writes",
        "",
        f"`{r['command']}` on {r['when']}, {r['machine']}, {r['database']}. "
        "Old finished jobs: half the rows in one job, a quarter in jobs of 2,500, a quarter in "
        "jobs of 50. A writer stores a running job's rows, 256 per transaction, throughout; "
        "its commit latency is shown before and during the purge.",
        "",
        "| rows per txn | jobs | rows | seconds | rows/s | txns | txn p50 ms | longest txn ms "
        "| writer p50/p99 ms before | writer p50/p99/max ms during |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for x in r["runs"]:
        batch = x["batch_rows"]
        lines.append(f"| {batch:,} | " if isinstance(batch, int) else f"| {batch} | ")
        lines[-1] += (
            f"{x['jobs']:,} | {x['rows']:,} | {x['seconds']} | {x['rows_per_s']:,} | "
            f"{x['transactions']} | {x['txn_p50_ms']} | {x['txn_max_ms']} | "
            f"{x['writer_p50_ms_before']} / {x['writer_p99_ms_before']} | "
            f"{x['writer_p50_ms_during']} / {x['writer_p99_ms_during']} / "
            f"{x['writer_max_ms_during']} |"
        )
    lines += [
        "",
        "The longest transaction is the longest any row lock of the purge was held; the "
        "writer never waits on those locks (it writes other rows), so what it feels is the "
        "load on the server. Every run checks that the writer's job kept all of its rows.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
