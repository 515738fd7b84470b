"""Worker throughput and formed batch size: our micro-batching strategy vs. Celery's default
one-message-per-task path vs. celery-batches, on the same model, queue, database and texts.

    python bench/worker_throughput.py [--n 2000] [--modes ours,naive,cb] [--per-message 1,256]
        [--concurrency 2] [--db-url sqlite:///...] [--broker redis://127.0.0.1:6379/14]

For each (mode, texts per message) it enqueues one job, starts the worker, and measures texts/s
between the job's first and last commit (`started_at` → `finished_at` in SQL, so model loading
and start-up are excluded) and the mean formed batch from the worker's per-batch records
(TEXTLSTM_WORKER_STATS_DIR, `textlstm.serving.stages`; the naive and celery-batches variants
write the same records).
The model is the reference shape (embedding 100, LSTM 128 unidirectional), trained for
one epoch on examples/data/news_train.csv into runs/bench-h128 if missing; texts are
examples/data/news_test.csv repeated. Writes bench/results/worker_throughput.{md,json}.
celery-batches pins celery < 5.7: install it with `pip install --no-deps --target DIR
celery-batches` and pass `--cb-path DIR` (it ran unmodified on celery 5.7 here).
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
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import REFERENCE_SHAPE, ROOT, train_once  # noqa: E402 - runnable as a script
from textlstm.serving.stages import read_stats  # noqa: E402

BUNDLE = ROOT / "runs" / "bench-h128"


def ensure_bundle() -> Path:
    return train_once(BUNDLE, ROOT / "examples/data/news_train.csv", *REFERENCE_SHAPE,
                      "--epochs", "1")  # fmt: skip


def worker_argv(mode: str, queue: str, concurrency: int) -> list[str]:
    if mode == "ours":
        return [
            sys.executable,
            "-c",
            "from textlstm.cli import cli; cli()",
            "worker",
            "--concurrency",
            str(concurrency),
            "--threads",
            "1",
            "--device",
            "cpu",
            "--queues",
            queue,
        ]
    app = {"naive": "bench.celery_variants:naive_app", "cb": "bench.cb_variant:cb_app"}[mode]
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app,
        "worker",
        "--pool",
        "prefork",
        "--concurrency",
        str(concurrency),
        "--queues",
        queue,
        "--loglevel",
        "info",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def run_one(args: argparse.Namespace, mode: str, per_message: int, texts: list[str]) -> dict:
    from textlstm.client import Client
    from textlstm.settings import Settings, subprocess_env

    queue = f"bench-{mode}-{uuid.uuid4().hex[:8]}"
    stats_dir = args.tmp / f"{queue}-{per_message}.stats"  # this run's records alone
    settings = Settings(
        database_url=args.db_url,
        broker_url=args.broker,
        queue=queue,
        message_max_items=per_message,
        _env_file=None,
    )  # type: ignore[call-arg]
    env = subprocess_env(
        {
            "TEXTLSTM_DATABASE_URL": args.db_url,
            "TEXTLSTM_BROKER_URL": args.broker,
            "TEXTLSTM_QUEUE": queue,
            "TEXTLSTM_MODEL_CACHE_DIR": str(args.tmp / "cache"),
            "TEXTLSTM_WORKER_WARMUP_MODEL": "bench",
            "TEXTLSTM_WORKER_STATS_DIR": str(stats_dir),
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), args.cb_path) if p),
        }
    )
    client = Client(settings)
    t0 = time.monotonic()
    job = client.submit(texts, model="bench", record_job=True)
    enqueue_s = time.monotonic() - t0
    log_path = args.tmp / f"{mode}-{per_message}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            worker_argv(mode, queue, args.concurrency),
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        st = client.wait(job, timeout=args.timeout, poll_interval=0.2)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    window = (st.finished_at - st.started_at).total_seconds()
    sizes = [r.items for r in read_stats(stats_dir)]
    row = {
        "mode": mode,
        "texts_per_message": per_message,
        "n": len(texts),
        "concurrency": args.concurrency,
        "status": st.status,
        "ok": st.ok,
        "seconds": round(window, 3),
        "texts_per_s": round(len(texts) / max(window, 1e-9)),
        "batches": len(sizes),
        "mean_batch": round(sum(sizes) / len(sizes), 1) if sizes else None,
        "enqueue_s": round(enqueue_s, 2),
    }
    print(json.dumps(row), flush=True)
    return row


def model_ceiling(texts: list[str]) -> int:
    """The model alone in this process (1 thread, batch 128): the per-process ceiling."""
    import torch

    from textlstm.classifier.predictor import Classifier

    torch.set_num_threads(1)
    clf = Classifier.load(ensure_bundle())
    clf.predict(texts[:128])
    t0 = time.perf_counter()
    clf.predict(texts, batch_size=128)
    return round(len(texts) / (time.perf_counter() - t0))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--modes", default="ours,naive,cb")
    p.add_argument("--per-message", default="1,256")
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--db-url", default=None)
    p.add_argument("--broker", default="redis://127.0.0.1:6379/14")
    p.add_argument("--cb-path", default="")
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--out", type=Path, default=ROOT / "bench/results/worker_throughput")
    args = p.parse_args()
    args.tmp = Path(tempfile.mkdtemp(prefix="textlstm-bench-"))
    args.db_url = args.db_url or f"sqlite:///{args.tmp / 'bench.db'}"

    from textlstm.store.db import session_scope
    from textlstm.store.migrate import upgrade
    from textlstm.store.registry import register_bundle

    upgrade(args.db_url)
    with session_scope(args.db_url) as session:
        register_bundle(session=session, path=ensure_bundle(), name="bench", aliases=["production"])
    with (ROOT / "examples/data/news_test.csv").open(newline="", encoding="utf-8") as fh:
        base = [r["text"] for r in csv.DictReader(fh)]
    texts = [base[i % len(base)] for i in range(args.n)]
    ceiling = model_ceiling(texts)
    print(json.dumps({"model_alone_texts_per_s_1_thread_bs128": ceiling}), flush=True)
    rows = []
    for _ in range(args.repeats):
        for per in [int(x) for x in args.per_message.split(",")]:
            for mode in args.modes.split(","):
                if mode == "cb" and not args.cb_path:
                    continue
                rows.append(run_one(args, mode, per, texts))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        "| mode | texts/message | processes | texts/s | mean batch | batches | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['mode']} | {r['texts_per_message']} | {r['concurrency']} | "
        f"{r['texts_per_s']} | {r['mean_batch']} | {r['batches']} | {r['seconds']} |"
        for r in rows
    ]
    db = args.db_url.split(":")[0]
    args.out.with_suffix(".md").write_text(
        f"# Worker throughput ({args.n} texts, {db}, `python bench/worker_throughput.py`)\n\n"
        f"Model alone, 1 thread, batch 128, same run: {ceiling} texts/s per process.\n\n"
        + "\n".join(lines)
        + "\n"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
