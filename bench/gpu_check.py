"""GPU end-to-end check: a real worker on `--device cuda` (falls back to CPU without CUDA),
a real Redis, an SQLite database, the sample model; reports throughput, formed batch sizes and
parity with in-process CPU predictions.

    python bench/gpu_check.py [--n 20000] [--processes 1] [--device cuda] [--require-gpu]

Steps: train (or reuse) runs/news-sample on examples/data/news_train.csv; register it in a
fresh SQLite file; use TEXTLSTM_BROKER_URL if Redis answers there, else start `redis-server`
on a free port; start `textlstm-admin worker --device cuda`; submit examples/data/news_test.csv
repeated to --n texts twice (256 texts per message, then one text per message for a tenth of
them); wait; compare 200 stored rows with `Classifier.predict` on CPU (max |Δp|); print one JSON
summary and write it to bench/results/gpu_check.json. Everything it started is stopped.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from textlstm.serving.stages import read_stats  # noqa: E402 - runnable as a script
from textlstm.testing.ports import free_port  # noqa: E402 - runnable as a script

BUNDLE = ROOT / "runs" / "news-sample"
ADMIN = [sys.executable, "-c", "from textlstm.cli import cli; cli()"]


def redis_ok(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:  # noqa: BLE001 - any failure means "not reachable"
        return False


def ensure_redis(url: str, started: list[subprocess.Popen[bytes]]) -> str:
    if redis_ok(url):
        return url
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit(f"no Redis at {url} and no redis-server binary to start one")
    port = free_port()
    started.append(
        subprocess.Popen(
            [exe, "--port", str(port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(50):
        if redis_ok(url):
            return url
        time.sleep(0.1)
    sys.exit("redis-server did not start")


def ensure_bundle() -> Path:
    if not (BUNDLE / "manifest.json").exists():
        subprocess.run(
            [
                *ADMIN,
                "train",
                str(ROOT / "examples/data/news_train.csv"),
                "--out",
                str(BUNDLE),
                "--overwrite",
            ],
            check=True,
        )
    return BUNDLE


def run_job(settings: Any, texts: list[str], per_message: int, timeout: float) -> dict:
    from textlstm.client import Client

    client = Client(settings.model_copy(update={"message_max_items": per_message}))
    job = client.submit(texts, model="news", record_job=True)
    st = client.wait(job, timeout=timeout, poll_interval=0.2)
    window = (st.finished_at - st.started_at).total_seconds()
    return {
        "job": str(job),
        "texts_per_message": per_message,
        "n": len(texts),
        "status": st.status,
        "ok": st.ok,
        "errors": st.errors,
        "model": st.model,
        "seconds": round(window, 3),
        "texts_per_s": round(len(texts) / max(window, 1e-9)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--processes", type=int, default=0, help="0 = one per GPU (or per core)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--require-gpu", action="store_true")
    p.add_argument("--broker", default=None, help="[default: TEXTLSTM_BROKER_URL]")
    p.add_argument("--timeout", type=float, default=400)
    p.add_argument("--out", type=Path, default=ROOT / "bench/results/gpu_check.json")
    args = p.parse_args()

    import torch

    cuda = torch.cuda.is_available()
    device = args.device
    if not cuda:
        if args.require_gpu:
            sys.exit("CUDA is not available and --require-gpu was given")
        print("CUDA is not available: running the same check on CPU", flush=True)
        device = "cpu"
    started: list[subprocess.Popen[bytes]] = []
    tmp = Path(tempfile.mkdtemp(prefix="textlstm-gpu-check-"))
    worker: subprocess.Popen[bytes] | None = None
    try:
        from textlstm.classifier.predictor import Classifier
        from textlstm.settings import Settings, get_settings, subprocess_env
        from textlstm.store.db import session_scope
        from textlstm.store.migrate import upgrade
        from textlstm.store.registry import register_bundle

        broker = ensure_redis(args.broker or get_settings().broker_url, started)
        db_url = f"sqlite:///{tmp / 'check.db'}"
        upgrade(db_url)
        bundle = ensure_bundle()
        with session_scope(db_url) as session:
            register_bundle(session=session, path=bundle, name="news", aliases=["production"])
        queue = f"gpu-check-{os.getpid()}"
        settings = Settings(database_url=db_url, broker_url=broker, queue=queue, _env_file=None)  # type: ignore[call-arg]
        env = subprocess_env(
            {
                "TEXTLSTM_DATABASE_URL": db_url,
                "TEXTLSTM_BROKER_URL": broker,
                "TEXTLSTM_QUEUE": queue,
                "TEXTLSTM_MODEL_CACHE_DIR": str(tmp / "cache"),
                "TEXTLSTM_WORKER_WARMUP_MODEL": "news",
                "TEXTLSTM_WORKER_STATS_DIR": str(tmp / "stats"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        log_path = tmp / "worker.log"
        with log_path.open("wb") as log:
            worker = subprocess.Popen(
                [*ADMIN, "worker", "--device", device, "--concurrency", str(args.processes)],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        with (ROOT / "examples/data/news_test.csv").open(newline="", encoding="utf-8") as fh:
            base = [r["text"] for r in csv.DictReader(fh)]
        texts = [base[i % len(base)] for i in range(args.n)]
        jobs = [
            run_job(settings, texts, 256, args.timeout),
            run_job(settings, texts[: max(1, args.n // 10)], 1, args.timeout),
        ]
        from textlstm.client import Client

        rows = Client(settings).results(jobs[0]["job"])[:200]
        ref = Classifier.load(bundle, device="cpu").predict([texts[r.item_index] for r in rows])
        max_diff = max(
            abs(r.probabilities[k] - v)  # type: ignore[index]
            for r, pr in zip(rows, ref, strict=True)
            for k, v in pr.probabilities.items()
        )
        labels_equal = all(r.label == pr.label for r, pr in zip(rows, ref, strict=True))
        log_text = log_path.read_text(errors="replace")
        sizes = [r.items for r in read_stats(tmp / "stats")]
        devices = sorted(set(re.findall(r"device (cuda:\d+|cpu),", log_text)))
        summary = {
            "device_requested": args.device,
            "device_used": devices,
            "cuda": cuda,
            "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "torch": torch.__version__,
            "processes": args.processes,
            "jobs": jobs,
            "batches": len(sizes),
            "mean_batch": round(sum(sizes) / max(1, len(sizes)), 1),
            "parity_rows": len(rows),
            "parity_labels_equal": labels_equal,
            "parity_max_abs_prob_diff": max_diff,
        }
        print(json.dumps(summary, indent=2))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
        if not labels_equal or max_diff > 1e-4:
            sys.exit("parity check failed")
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        for proc in started:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
