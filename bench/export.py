"""Exporting stored results: time and peak memory of `textlstm-admin results` on 1,000,000 rows.

    python bench/export.py                      # 100,000 + 900,000 rows, PostgreSQL (~3 min)
    python bench/export.py --rows 20000 --out /tmp/export_quick

A fresh PostgreSQL database (dropped at the end) gets one registered model and two jobs: a small
one (--rows / 10 items) and a big one (the rest), stored through the workers' own save path in
batches of 10,000, and ANALYZEd (a table in use has planner statistics; a fresh load is
planned as if empty, which sorted every page: 5,500 rows/s). Then each export runs as its
own `textlstm-admin results` process, and its wall time and peak RSS (from the kernel,
`wait4`) are recorded:

- the small job alone (item order, on the primary key);
- every row of the model (`--model`), as CSV, JSONL and Parquet;
- the low-confidence rows (`--max-score 0.6`, about a fifth of them), as JSONL.

Constant memory shows as the same peak RSS for the small job and for ten times the rows.
Results: bench/results/export.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from textlstm.store.db import make_engine, make_session_factory
from textlstm.store.jobs import ensure_job
from textlstm.store.predictions import PredictionRecord, save_predictions
from textlstm.store.registry import register_bundle
from textlstm.testing.bundles import write_fake_bundle
from textlstm.testing.postgres import analyze, throwaway_database

ROOT = Path(__file__).resolve().parents[1]
BATCH = 10_000


def seed(url: str, bundle: Path, jobs: list[tuple[uuid.UUID, int]]) -> None:
    """Store the jobs' rows through the save path the workers use."""
    rng = random.Random(7)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    try:
        with factory.begin() as s:
            mv, _ = register_bundle(session=s, path=bundle, name="news")
            for job_id, n in jobs:
                ensure_job(session=s, job_id=job_id, model_ref="news@1", expected=n)
        for job_id, n in jobs:
            for start in range(0, n, BATCH):
                records = []
                for i in range(start, min(n, start + BATCH)):
                    top = rng.uniform(0.5, 1.0)
                    label = "pos" if rng.random() < 0.5 else "neg"
                    other = "neg" if label == "pos" else "pos"
                    probs = {label: top, other: 1 - top}
                    records.append(
                        PredictionRecord(i, "ok", label, top, probs, f"doc-{i}", None, 12.5)
                    )
                with factory.begin() as s:
                    save_predictions(
                        session=s, job_id=job_id, records=records, model_version_id=mv.id
                    )
    finally:
        engine.dispose()


def run_export(url: str, args: list[str], out: Path) -> dict[str, float]:
    """One `textlstm-admin results` process: wall seconds, peak RSS (MB), output size."""
    env = {**os.environ, "TEXTLSTM_DATABASE_URL": url}
    admin = Path(sys.executable).with_name("textlstm-admin")  # the installed console script
    cmd = [str(admin), "results", *args, "-o", str(out)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    said = proc.stdout.read().decode() if proc.stdout else ""  # "N items to FILE"
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"export failed ({proc.returncode}): {' '.join(args)}: {err.strip()}")
    rows = int(said.split()[0])
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "file_mb": round(out.stat().st_size / 2**20, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows stored in all")
    ap.add_argument(
        "--pg-admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "export")
    args = ap.parse_args()

    small, big = uuid.uuid4(), uuid.uuid4()
    n_small = args.rows // 10
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory() as tmp,
        throwaway_database(args.pg_admin_url, "textlstm_bench") as url,
    ):
        work = Path(tmp)
        seed(
            url, write_fake_bundle(work / "bundle"), [(small, n_small), (big, args.rows - n_small)]
        )
        analyze(url)  # a table that has been in use has statistics; a fresh load has none
        seed_s = time.perf_counter() - started
        print(f"stored {args.rows:,} rows in {seed_s:.0f} s", flush=True)
        runs = {}
        plan = [
            ("one job (small), jsonl", [str(small), "--format", "jsonl"], "small.jsonl"),
            ("--model, csv", ["--model", "news", "--format", "csv"], "all.csv"),
            ("--model, jsonl", ["--model", "news", "--format", "jsonl"], "all.jsonl"),
            ("--model, parquet", ["--model", "news", "--format", "parquet"], "all.parquet"),
            ("--max-score 0.6, jsonl", ["--max-score", "0.6", "--format", "jsonl"], "low.jsonl"),
        ]
        for name, cli_args, fname in plan:
            runs[name] = run_export(url, cli_args, work / fname)
            print(json.dumps({"export": name, **runs[name]}), flush=True)

    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s), shared with other work",
        "command": "python bench/export.py " + " ".join(sys.argv[1:]),
        "rows": args.rows,
        "seed_s": round(seed_s, 1),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(render(report))
    print(f"wrote {args.out.with_suffix('.md')}")


def render(r: dict) -> str:
    lines = [
        f"# Export: `textlstm-admin results` on {r['rows']:,} stored rows",
        "",
        f"`{r['command']}` on {r['when']}, {r['machine']}, PostgreSQL on the same host. "
        f"One process per export; peak RSS from the kernel (`wait4`). Storing the rows took "
        f"{r['seed_s']:.0f} s (the workers' save path, batches of {BATCH:,}).",
        "",
        "| export | rows | seconds | rows/s | peak RSS MB | file MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, x in r["runs"].items():
        lines.append(
            f"| {name} | {x['rows']:,} | {x['seconds']} | {x['rows_per_s']:,} | "
            f"{x['peak_rss_mb']} | {x['file_mb']} |"
        )
    lines += [
        "",
        "Rows are read in keyset pages of 1,000 and written as they come (Parquet in row groups "
        "of 10,000), so the peak RSS of an export does not grow with the rows it writes: compare "
        "the small job with the whole model.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
