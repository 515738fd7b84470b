"""Single-text `POST /v1/jobs` through the HTTP gateway: requests/s, p50 and p99, beside the
Python producers on the same services in the same run.

    python bench/gateway.py                       # 15 s per run, PostgreSQL, 2 gateway workers
    python bench/gateway.py --seconds 3 --out /tmp/gateway_quick
    python bench/gateway.py --before OLD.json --before-note "what OLD.json ran"   # + before/after

--before takes the .json of an earlier run (of the code before a change, run on the same machine
just before this one: the numbers move with the machine's load) and adds a before/after table of
the gateway's rows to the results.

A private Redis (no append-only file) and a throwaway PostgreSQL database get one registered
model. Then, each for --seconds, on loopback:

- the gateway (`textlstm-admin serve-api --workers W`) under C client threads, each with its
  own keep-alive httpx connection, submitting one-text jobs as fast as they are answered; every
  request's latency is kept; the gateway processes' CPU time is read from /proc (psutil);
- the gateway's `POST /v1/jobs:batch` under the same clients, --batch-size one-text jobs a
  request (one job-row INSERT and one envelope publish per request);
- `Client.submit` in this process, one one-text job per call, first as by default (one engine
  shared per database URL), then with an engine of its own as the gateway has: what each
  gateway request does (validate, record the job row, publish), without HTTP;
- the batching `Producer` (linger 5 ms): one-text jobs coalesced into envelopes.

Nothing consumes the queue: this measures the front door into the pipeline, not classification.
Results: bench/results/gateway.{md,json}.
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
from pathlib import Path
from typing import Any

import httpx
import psutil

from textlstm.client import Client
from textlstm.client.producer import Producer
from textlstm.gateway.auth import hash_token
from textlstm.settings import Settings
from textlstm.store.db import make_engine, make_session_factory, session_scope
from textlstm.store.registry import register_bundle
from textlstm.testing.bundles import write_fake_bundle
from textlstm.testing.ports import free_port
from textlstm.testing.postgres import throwaway_database
from textlstm.testing.processes import GatewayProcess
from textlstm.testing.redis_server import OwnRedis

TOKEN = "bench-token-" + "b" * 32
TEXT = "the match ended in a draw after extra time"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def run_gateway(
    url: str, clients: int, seconds: float, proc_pids: list[int], batch: int = 0
) -> dict[str, Any]:
    """C threads posting one-text jobs for `seconds` (`batch` > 0: that many a request to
    /v1/jobs:batch); latencies and the server's CPU time."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start_evt = threading.Event()
    stop_at = [0.0]

    def client(n: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            job = {"texts": [TEXT], "model": "news"}
            path, body = ("/v1/jobs:batch", {"jobs": [job] * batch}) if batch else ("/v1/jobs", job)
            http.post(path, json=body)  # connect and warm up outside the clock
            start_evt.wait()
            while time.perf_counter() < stop_at[0]:
                t0 = time.perf_counter()
                r = http.post(path, json=body)
                latencies[n].append(time.perf_counter() - t0)
                if r.status_code != 202:
                    errors[n] += 1

    procs = [psutil.Process(p) for p in proc_pids]
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    cpu0 = sum(p.cpu_times().user + p.cpu_times().system for p in procs)
    began = time.perf_counter()
    stop_at[0] = began + seconds
    start_evt.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    cpu = sum(p.cpu_times().user + p.cpu_times().system for p in procs) - cpu0
    flat = [x for xs in latencies for x in xs]
    return {
        "requests": len(flat),
        "jobs_per_s": round(len(flat) * max(1, batch) / wall, 1),
        "errors": sum(errors),
        "requests_per_s": round(len(flat) / wall, 1),
        "p50_ms": round(1000 * percentile(flat, 0.50), 2),
        "p99_ms": round(1000 * percentile(flat, 0.99), 2),
        "mean_ms": round(1000 * statistics.fmean(flat), 2) if flat else 0.0,
        "server_cpu_ms_per_request": round(1000 * cpu / max(1, len(flat)), 2),
    }


def run_client(settings: Settings, seconds: float, factory: Any = None) -> dict[str, Any]:
    client = Client(settings, session_factory=factory)
    client.submit([TEXT], model="news")  # warm up
    n = 0
    began = time.perf_counter()
    latencies = []
    while time.perf_counter() - began < seconds:
        t0 = time.perf_counter()
        client.submit([TEXT], model="news")
        latencies.append(time.perf_counter() - t0)
        n += 1
    wall = time.perf_counter() - began
    return {
        "jobs": n,
        "jobs_per_s": round(n / wall, 1),
        "p50_ms": round(1000 * percentile(latencies, 0.5), 2),
        "p99_ms": round(1000 * percentile(latencies, 0.99), 2),
    }


def run_producer(settings: Settings, seconds: float) -> dict[str, Any]:
    n = 0
    with Producer(settings, linger_ms=5) as producer:
        began = time.perf_counter()
        while time.perf_counter() - began < seconds:
            producer.submit([TEXT], model="news")
            n += 1
        producer.flush()
        wall = time.perf_counter() - began
    return {"jobs": n, "jobs_per_s": round(n / wall, 1)}


def _shown(path: Path) -> str:
    """`path` as recorded in the results: relative to the repository when inside it, so a
    committed result names no machine's directories."""
    root = Path(__file__).resolve().parent.parent
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return path.name


def before_after(
    before: dict[str, Any], after: dict[str, Any], note: str, batch_size: int
) -> list[str]:
    """The gateway's rows of an earlier run (`before`) beside this one's, as Markdown."""
    md = [
        "",
        f"Before ({note or 'an earlier run'}) and after, run one after the other on this machine:",
        "",
        "| gateway | jobs/s before → after | p50 ms | p99 ms | gateway CPU ms per request |",
        "|---|---|---|---|---|",
    ]
    names = {"gateway": "`POST /v1/jobs`", "gateway batch": f"`:batch`, {batch_size} a request"}
    for key, label in names.items():
        b, a = before[key], after[key]
        md.append(
            f"| {label} | {b['jobs_per_s']} → {a['jobs_per_s']} | {b['p50_ms']} → {a['p50_ms']} "
            f"| {b['p99_ms']} → {a['p99_ms']} | {b['server_cpu_ms_per_request']} → "
            f"{a['server_cpu_ms_per_request']} |"
        )
    return md


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2, help="gateway uvicorn processes")
    ap.add_argument("--batch-size", type=int, default=100, help="jobs per /v1/jobs:batch")
    ap.add_argument(
        "--pg-admin-url",
        default=os.environ.get(
            "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1/postgres"
        ),
    )
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "gateway")
    ap.add_argument("--before", type=Path, help="an earlier run's .json: add a before/after table")
    ap.add_argument("--before-note", default="", help="what the --before run measured")
    args = ap.parse_args()
    before = json.loads(args.before.read_text())["runs"] if args.before else None

    with tempfile.TemporaryDirectory() as tmp, throwaway_database(args.pg_admin_url) as db:
        work = Path(tmp)
        redis = OwnRedis(work / "redis", appendonly=False).start()
        try:
            settings = Settings(
                database_url=db, broker_url=redis.url, queue="bench", _env_file=None
            )  # type: ignore[call-arg]
            with session_scope(db) as s:
                register_bundle(session=s, path=write_fake_bundle(work / "bundle"), name="news")
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "TEXTLSTM_DATABASE_URL": db,
                "TEXTLSTM_BROKER_URL": redis.url,
                "TEXTLSTM_QUEUE": "bench",
                "TEXTLSTM_API_TOKENS": f"{hash_token(TOKEN)}:submit",
            }
            gw = GatewayProcess(env, work / "gateway.log", free_port())
            gw.start("--workers", str(args.workers), "--log-level", "warning")
            try:
                time.sleep(1.0)  # every uvicorn worker up
                pids = [gw.pid, *(c.pid for c in psutil.Process(gw.pid).children(recursive=True))]
                runs = {
                    "gateway": run_gateway(gw.url, args.clients, args.seconds, pids),
                    "gateway batch": run_gateway(
                        gw.url, args.clients, args.seconds, pids, batch=args.batch_size
                    ),
                }
            finally:
                gw.close()
            runs["Client.submit, shared engine"] = run_client(settings, args.seconds)
            engine = make_engine(db)
            try:
                runs["Client.submit, kept engine"] = run_client(
                    settings, args.seconds, make_session_factory(engine)
                )
            finally:
                engine.dispose()
            runs["Producer (linger 5 ms)"] = run_producer(settings, args.seconds)
        finally:
            redis.stop()

    doc = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "platform": platform.platform()},
        "config": vars(args) | {"out": _shown(args.out),
                                "before": _shown(args.before) if args.before else None},
        "runs": runs,
        "before": before,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    g = runs["gateway"]
    b = runs["gateway batch"]
    c = runs["Client.submit, shared engine"]
    k = runs["Client.submit, kept engine"]
    p = runs["Producer (linger 5 ms)"]
    md = [
        f"One-text jobs into the pipeline, {args.seconds:g} s each, {os.cpu_count()} CPUs, "
        f"PostgreSQL + Redis on loopback; gateway: {args.workers} uvicorn workers, "
        f"{args.clients} keep-alive clients.",
        "",
        "| front door | jobs/s | p50 ms | p99 ms | notes |",
        "|---|---|---|---|---|",
        f"| HTTP gateway `POST /v1/jobs` | {g['requests_per_s']} | {g['p50_ms']} | {g['p99_ms']} "
        f"| {g['server_cpu_ms_per_request']} ms gateway CPU per request; {g['errors']} errors |",
        f"| HTTP gateway `POST /v1/jobs:batch`, {args.batch_size} jobs a request | "
        f"{b['jobs_per_s']} | {b['p50_ms']} | {b['p99_ms']} | per request; "
        f"{b['server_cpu_ms_per_request']} ms gateway CPU per request; {b['errors']} errors |",
        f"| `Client.submit` (the default: one engine per URL per process) | {c['jobs_per_s']} | "
        f"{c['p50_ms']} | {c['p99_ms']} | one thread |",
        f"| `Client.submit` with its own kept engine (as the gateway) | {k['jobs_per_s']} | "
        f"{k['p50_ms']} | {k['p99_ms']} | one thread: a gateway request without HTTP |",
        f"| `Producer`, linger 5 ms | {p['jobs_per_s']} | | | jobs coalesced into envelopes |",
    ]
    if before is not None:
        md += before_after(before, runs, args.before_note, args.batch_size)
    args.out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
