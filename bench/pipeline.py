"""The pipeline against its own ceiling and against the naive way, in one run.

    python bench/pipeline.py --data-dir DATA   # 20,000 texts, 3 repeats, ~10 min
    python bench/pipeline.py --quick           # 300 texts, 1 repeat, a smoke run (~1 min)
    python bench/pipeline.py --data-dir DATA --n 40000 --repeats 5 --producers 3

Every mode classifies the same texts (the test split of a shared dataset, repeated to --n) with
the same bundle (the reference shape: embedding 100, one-direction LSTM 128, trained one epoch
on the dataset's train split into runs/), into a fresh PostgreSQL database, through a
redis-server of its own (no persistence):

- ceiling: `Classifier.predict` in-process at batch 128 (1 process × 1 thread, 1 × 2 threads,
  and 2 processes × 1 thread, the split the workers use; the best is the ceiling);
- bulk: `Client.submit` of one job of --n texts (256 per message) → 2 worker processes × 1
  thread → PostgreSQL;
- producer: the same texts as --n single-text jobs from --producers processes, each through
  `textlstm.client.Producer(linger_ms=--linger-ms)` (version 2 envelopes of up to 256 items),
  with Python's default garbage collector in the producer processes. Like a long-lived
  application they stay up until the run is measured (an exiting interpreter took ~0.15-0.2 s
  of CPU per process, charged to the pipeline before), and each reports its own CPU per job;
- producer_gc: the same, the producer processes freezing their start-up heap and collecting
  less often, as README "High-rate producers" advises (the workers do it themselves);
- raw: one documented version 1 message per text, pushed as a producer in another language
  would (protocol 2 JSON envelopes, LPUSH in pipelined chunks; see README "The message");
- naive: one plain Celery task per text, model at batch size 1, one commit per row
  (`bench/celery_variants.py:tutorial_app`, prefork -c 2), on --naive-n texts;
- light: single-text jobs through one Producer at --light-rate texts/s for --light-s seconds.

Throughput is texts from the first submit to the last row written (`predictions.created_at`,
set when the worker inserts, its commit following within the same batch). Latency is per item,
`predictions.created_at - jobs.submitted_at`. The mean formed batch and the stage split come
from the workers' per-batch records (TEXTLSTM_WORKER_STATS_DIR, `textlstm.serving.stages`:
fetch, decode, tokenize, forward, write); what is left of the workers' wall time is Celery,
acking and idle. Worker RSS is summed over each worker's process group after each run.
Medians of --repeats, with their min-max spread.
Results: bench/results/pipeline.{md,json} (pipeline_quick with --quick).

--broker redis|sentinel|rabbitmq, or a comma-separated list, runs the broker modes on each
broker in turn, in one session against the one ceiling measured first, each broker a private
one started for the run (never the machine's): redis-server without persistence (`redis`, the
default: the run above, unchanged); a master, one replica and three Sentinels
(`sentinel`, `textlstm.testing.sentinel`: producers WAIT for the replica, the default there);
a RabbitMQ node of its own (`rabbitmq`, `textlstm.testing.rabbitmq`: durable quorum queues on
one node, publisher confirms). Modes that only mean something on one broker are reported as
"n/a" with the reason (BROKER_MODES). Any other list than `redis` alone writes
bench/results/pipeline_brokers.{md,json} (pipeline_brokers_quick with --quick): one table of
broker × mode, texts/s, ratio to the ceiling and latency.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402 - runnable as a script
    CLI,
    PG_ADMIN_URL,
    REFERENCE_SHAPE,
    RESULTS,
    ROOT,
    Process,
    clean_env,
    cpu_snapshot,
    cpu_split,
    own_redis,
    repeated_texts,
    scratch_dir,
    shown,
    throwaway_database,
    train_once,
)
from textlstm.serving.stages import BatchStats, StatsTail  # noqa: E402

MODEL = "bench"

#: The brokers --broker names, in the order a list is run.
BROKERS = ("redis", "sentinel", "rabbitmq")
#: Modes that run on some brokers only: mode -> {broker: why not there}.
NOT_ON: dict[str, dict[str, str]] = {
    "raw": {
        "rabbitmq": "raw LPUSHes kombu's Redis list entries by hand; an AMQP producer in "
        "another language publishes with basic.publish instead, which `bulk`/`producer` do",
    },
    "naive": dict.fromkeys(
        ("sentinel", "rabbitmq"),
        "the tutorial baseline (one Celery task per text) is the same whatever the broker: "
        "measured on redis only",
    ),
    "int8": dict.fromkeys(
        ("sentinel", "rabbitmq"),
        "int8 weights are a worker setting, independent of the broker: measured on redis only",
    ),
}
#: What each broker adds per publish and per message (the report states it next to the numbers).
BROKER_NOTES = {
    "redis": "one redis-server, no persistence; a publish is one LPUSH, acknowledged by the "
    "server alone",
    "sentinel": "master + 1 replica + 3 Sentinels (asynchronous replication, no persistence); "
    "each producer call ends with `WAIT 1` (TEXTLSTM_BROKER_WAIT_REPLICAS, default 1 on "
    "sentinel://): a job is accepted once the replica holds it; the worker's atomic pop is the "
    "same Lua script, on the master found through the Sentinels",
    "rabbitmq": "one RabbitMQ node, durable quorum queues (x-queue-type quorum: every message "
    "written to the node's Raft log and fsynced), publisher confirms (kombu confirm_publish: "
    "each basic.publish waits for basic.ack), acks after the commit (one basic.ack with "
    "multiple=True for a batch's contiguous delivery tags, worker/acks.py)",
}


# -- inputs ----------------------------------------------------------------------------------


def bundle_for(args: argparse.Namespace) -> Path:
    name = "pipeline-model-quick" if args.quick else f"pipeline-model-{args.train.parent.name}"
    return train_once(
        ROOT / "runs" / name, args.train, *REFERENCE_SHAPE, "--epochs", "1", "--seed", "1"
    )


# -- ceiling ---------------------------------------------------------------------------------


def _predict_share(
    bundle: str, texts: list[str], threads: int, quantize: str, start: Any, out: Any
) -> None:
    import torch

    from textlstm.serving.models import make_loader

    torch.set_num_threads(threads)
    clf = make_loader(quantize)(Path(bundle), "cpu")  # what the workers load
    clf.predict(texts[:128])
    start.wait()
    t0 = time.perf_counter()
    clf.predict(texts, batch_size=128)
    out.put(time.perf_counter() - t0)


def ceiling(bundle: Path, texts: list[str], processes: int, threads: int, quantize: str) -> float:
    """Texts/s of `processes` in-process classifiers, each on its share, started together."""
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(processes + 1), ctx.Queue()
    shares = [texts[i::processes] for i in range(processes)]
    procs = [
        ctx.Process(target=_predict_share, args=(str(bundle), s, threads, quantize, start, out))
        for s in shares
    ]
    for p in procs:
        p.start()
    start.wait()
    t0 = time.perf_counter()
    for _ in procs:
        out.get(timeout=600)
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    return len(texts) / wall


# -- what a run measures ---------------------------------------------------------------------


class Bench:
    def __init__(
        self,
        args: argparse.Namespace,
        db_url: str,
        broker: str,
        work: Path,
        transport_options: dict[str, Any] | None = None,
    ) -> None:
        from textlstm.settings import Settings
        from textlstm.store.db import make_engine, make_session_factory

        self.args, self.db_url, self.broker, self.work = args, db_url, broker, work
        self.transport_options = dict(transport_options or {})
        more = {"broker_transport_options": self.transport_options} if transport_options else {}
        self.settings = Settings(
            database_url=db_url, broker_url=broker, queue="bench", message_max_items=256,
            _env_file=None, **more,  # type: ignore[call-arg]
        )  # fmt: skip
        #: Time each send() took (the producers' side: publishes, confirms, WAIT), in rows.
        self.record_send = False
        #: Process groups of a broker whose CPU the machine-wide split does not name (RabbitMQ).
        self.broker_groups: set[int] = set()
        self.engine = make_engine(db_url)
        self.sessions = make_session_factory(self.engine)
        self.workers: list[Process] = []
        self.env = clean_env(
            TEXTLSTM_DATABASE_URL=db_url, TEXTLSTM_BROKER_URL=broker, TEXTLSTM_QUEUE="bench",
            TEXTLSTM_MODEL_CACHE_DIR=str(work / "cache"), TEXTLSTM_WORKER_WARMUP_MODEL=MODEL,
            OMP_NUM_THREADS="1", TEXTLSTM_WORKER_QUANTIZE="none",
            TEXTLSTM_WORKER_STATS_DIR=str(work / "stats"),
        )  # fmt: skip
        for setting in args.worker_setting:
            name, sep, value = setting.partition("=")
            if not sep:
                raise SystemExit(f"--worker-setting {setting!r}: expected NAME=VALUE")
            self.env[f"TEXTLSTM_{name.upper()}"] = value
        if transport_options:
            self.env["TEXTLSTM_BROKER_TRANSPORT_OPTIONS"] = json.dumps(transport_options)

    def rows(self) -> int:
        from textlstm.store.results import count_predictions

        with self.sessions() as s:
            return count_predictions(session=s)

    def wait_rows(self, n: int, what: str) -> None:
        deadline = time.monotonic() + self.args.timeout
        while (got := self.rows()) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: {got} of {n} rows after {self.args.timeout:g} s")
            time.sleep(0.05)

    def wait_stored(
        self,
        n: int,
        what: str,
        tail: StatsTail,
        seen: list[BatchStats],
        job: uuid.UUID | None = None,
    ) -> None:
        """Wait until the workers have stored n new rows, at almost no cost to the run; the
        batch records read meanwhile are added to `seen`.

        A count(*) over the predictions table every 50 ms took ~5 ms at 100,000 rows, up to a
        tenth of a core taken from the pipeline it measures. Our workers write a record with
        `inserted` after each commit, so their stats files are tailed instead; the tutorial
        worker writes none, and its one job's rows are counted on the primary key. The tail
        starts before the texts are sent.
        """
        deadline = time.monotonic() + self.args.timeout
        got = 0
        while got < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: {got} of {n} rows after {self.args.timeout:g} s")
            time.sleep(0.05)
            if job is not None:
                got = self.job_rows(job)
            else:
                new = tail.new()
                seen.extend(new)
                got += sum(r.inserted for r in new)

    def job_rows(self, job: uuid.UUID) -> int:
        from textlstm.store.results import count_predictions

        with self.sessions() as s:
            return count_predictions(session=s, job_id=job)

    # workers ------------------------------------------------------------------------------

    def start_workers(self, argv: list[str], name: str, ready: int) -> None:
        w = Process(argv, self.env, self.work / f"{name}.log")
        self.workers = [w]
        w.wait_for(" ready.", 180, count=ready)

    def stop_workers(self) -> None:
        for w in self.workers:
            w.stop()
        self.workers = []

    def ours(self) -> None:
        argv = [*CLI, "worker", "--concurrency", str(self.args.processes), "--threads", "1",
                "--device", "cpu"]  # fmt: skip
        self.start_workers(argv, "worker", self.args.processes)

    def tutorial(self) -> None:
        argv = [sys.executable, "-m", "celery", "-A", "bench.celery_variants:tutorial_app",
                "worker", "--pool", "prefork", "--concurrency", str(self.args.processes),
                "--queues", "tutorial", "--loglevel", "info", "--without-gossip",
                "--without-mingle", "--without-heartbeat"]  # fmt: skip
        self.start_workers(argv, "tutorial", 1)

    # one run --------------------------------------------------------------------------------

    def measure(self, mode: str, n: int, send: Any, job: uuid.UUID | None = None) -> dict[str, Any]:
        """Run `send()` (which submits n texts), wait for n new rows, and read the results."""
        base = self.rows()
        groups = {w.proc.pid for w in self.workers}
        cpu0 = cpu_snapshot(groups)
        broker0 = cpu_snapshot(self.broker_groups)["workers"] if self.broker_groups else 0.0
        tail = StatsTail(Path(self.env["TEXTLSTM_WORKER_STATS_DIR"]))
        seen: list[BatchStats] = []
        t_start, t0 = datetime.now(UTC), time.monotonic()
        send()
        sent_s = time.monotonic() - t0
        self.wait_stored(n, mode, tail, seen, job)
        observed = time.monotonic() - t0  # ≥ the last commit: the denominator of the split
        self.wait_rows(base + n, mode)  # every row is really there
        cpu = cpu_split(cpu0, cpu_snapshot(groups), observed)
        if self.broker_groups:  # the RabbitMQ node's share, out of "bench+producers+other"
            used = (cpu_snapshot(self.broker_groups)["workers"] - broker0) / observed
            cpu["rabbitmq"] = round(used, 2)
            other = cpu["bench+producers+other"] - used
            cpu["bench+producers+other"] = round(max(0.0, other), 2)
        lat, last = self.latencies(t_start)
        seconds = (last - t_start).total_seconds()
        seen.extend(tail.new())  # what was written after the last row was counted
        row = {
            "mode": mode,
            "n": n,
            "seconds": round(seconds, 3),
            "texts_per_s": round(n / seconds, 1),
            **percentiles(lat),
            **stage_split(seen, observed * self.args.processes),
            "worker_rss_mb": round(sum(w.rss_kb() for w in self.workers) / 1024, 1),
            "cores_used": cpu,
        }
        if self.record_send:
            row["send_s"] = round(sent_s, 3)
        print(json.dumps(row), flush=True)
        return row

    def latencies(self, since: datetime) -> tuple[list[float], datetime]:
        from textlstm.store.results import stored_since

        with self.sessions() as s:
            pairs = stored_since(session=s, since=since)
        ms = [(c - sub).total_seconds() * 1000 for c, sub in pairs]
        return ms, max(c for c, _ in pairs)

    # the modes -----------------------------------------------------------------------------

    def bulk(self, texts: list[str]) -> dict[str, Any]:
        from textlstm.client import Client

        client = Client(self.settings)
        return self.measure(
            "bulk", len(texts), lambda: client.submit(texts, model=MODEL, record_job=True)
        )

    def producer(self, texts: list[str], *, freeze_gc: bool = False) -> dict[str, Any]:
        """Single-text jobs from --producers processes; with `freeze_gc` those processes
        freeze their start-up heap and collect less often, as README advises for high-rate
        producers (the worker does the same)."""
        k = self.args.producers
        ctx = mp.get_context("spawn")
        go, done, release = ctx.Event(), ctx.Queue(), ctx.Event()
        shared = (self.args.linger_ms, freeze_gc, go, done, release)
        procs = [
            ctx.Process(target=_produce, args=(self.settings, texts[i::k], *shared))
            for i in range(k)
        ]
        before = self.rows()
        for p in procs:
            p.start()
        for _ in procs:  # every producer imported and connected before the clock starts
            assert done.get(timeout=120) == "ready"
        self.wait_rows(before + k, "the producers' warm-up jobs")

        def send() -> None:
            go.set()

        try:
            row = self.measure("producer_gc" if freeze_gc else "producer", len(texts), send)
            sent = [done.get(timeout=60) for _ in procs]  # (envelopes, jobs, CPU s) each
        finally:
            release.set()
            for p in procs:
                p.join(60)
        row["producers"] = k
        row["jobs_per_envelope"] = round(sum(s[1] for s in sent) / sum(s[0] for s in sent), 1)
        row["producer_cpu_us_per_job"] = round(1e6 * sum(s[2] for s in sent) / len(texts), 1)
        return row

    def producer_gc(self, texts: list[str]) -> dict[str, Any]:
        return self.producer(texts, freeze_gc=True)

    def raw(self, texts: list[str]) -> dict[str, Any]:
        import redis

        if self.transport_options:  # sentinel://: the master, found through the Sentinels
            from textlstm.wire.redis_layout import redis_client

            r = redis_client(self.broker, self.transport_options)
        else:
            r = redis.Redis.from_url(self.broker)
        job = str(uuid.uuid4())

        def send() -> None:
            pipe = r.pipeline(transaction=False)
            for i, text in enumerate(texts):
                pipe.lpush("bench", raw_message(job, i, len(texts), text, "bench"))
                if i % 1000 == 999:
                    pipe.execute()
            pipe.execute()

        row = self.measure("raw", len(texts), send)
        r.close()
        return row

    def naive(self, texts: list[str]) -> dict[str, Any]:
        from bench.celery_variants import tutorial_app
        from textlstm.store.jobs import ensure_job

        job = uuid.uuid4()
        with self.sessions.begin() as s:
            ensure_job(session=s, job_id=job, model_ref=MODEL, expected=len(texts))
        tutorial_app.conf.broker_url = self.broker

        def send() -> None:
            for i, text in enumerate(texts):
                tutorial_app.send_task(
                    "tutorial.classify", args=(str(job), i, text), queue="tutorial"
                )

        return self.measure("naive", len(texts), send, job=job)

    def light(self, texts: list[str]) -> dict[str, Any]:
        from textlstm.client.producer import Producer

        rate, seconds = self.args.light_rate, self.args.light_s
        n = int(rate * seconds)
        producer = Producer(self.settings, linger_ms=self.args.linger_ms)

        def send() -> None:
            t0 = time.monotonic()
            for i in range(n):
                time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
                producer.submit([texts[i % len(texts)]], model=MODEL)
            producer.close()

        row = self.measure("light", n, send)
        row["offered_texts_per_s"] = rate
        return row


def _produce(
    settings: Any,
    texts: list[str],
    linger_ms: float,
    freeze_gc: bool,
    go: Any,
    done: Any,
    release: Any,
) -> None:
    from textlstm.client.producer import Producer
    from textlstm.gc_tuning import tune_gc

    producer = Producer(settings, linger_ms=linger_ms, max_items=256)
    producer.submit([texts[0]], model=MODEL)  # connect and check the model before the clock
    producer.flush()
    if freeze_gc:  # README "High-rate producers": what a tuned application does at start-up
        tune_gc()
    done.put("ready")
    go.wait()
    before = producer.sent_messages, producer.sent_jobs
    cpu0 = time.process_time()  # every thread of this process: submit and the linger thread
    for t in texts:
        producer.submit([t], model=MODEL)
    producer.close()
    cpu = time.process_time() - cpu0
    done.put((producer.sent_messages - before[0], producer.sent_jobs - before[1], cpu))
    # A long-lived application does not exit after each batch: stay up until the run is
    # measured, so the interpreter's teardown (~0.2 s of CPU per process, measured) is not
    # charged to the pipeline while the workers are still storing.
    release.wait(600)


def raw_message(job: str, index: int, total: int, text: str, queue: str) -> bytes:
    """A protocol 2 task on Redis, built by hand from README "The message"."""
    msg = {"schema_version": 1, "job_id": job, "model": MODEL, "total": total,
           "items": [{"index": index, "id": None, "text": text}],
           "submitted_at": datetime.now(UTC).isoformat()}  # fmt: skip
    body = [[msg], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    task_id = str(uuid.uuid4())
    return json.dumps(
        {
            "body": base64.b64encode(json.dumps(body).encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {
                "lang": "py",
                "task": "textlstm.classify",
                "id": task_id,
                "root_id": task_id,
                "parent_id": None,
                "retries": 0,
            },  # fmt: skip
            "properties": {
                "correlation_id": task_id,
                "delivery_mode": 2,
                "priority": 0,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },  # fmt: skip
        }
    ).encode()


# -- summaries -------------------------------------------------------------------------------


def percentiles(ms: list[float]) -> dict[str, float]:
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    return {"p50_ms": round(q[49], 1), "p95_ms": round(q[94], 1), "p99_ms": round(q[98], 1)}


def stage_split(records: list[BatchStats], worker_s: float) -> dict[str, Any]:
    """Mean formed batch and each stage's share of `worker_s` seconds of worker time, from the
    workers' batch records."""
    if not records:  # the tutorial worker writes no batch records: each task is one text
        return {"mean_batch": 1.0, "stages_pct": None}
    sizes = [r.items for r in records]
    forward, db = sum(r.forward_ms for r in records), sum(r.db_ms for r in records)
    tok, dec = sum(r.tokenize_ms for r in records), sum(r.decode_ms for r in records)
    fetch = sum(r.fetch_ms for r in records)
    total = worker_s * 1000
    stages = {
        "fetch": fetch, "decode": dec, "tokenize": tok, "forward": forward - tok, "write": db
    }  # fmt: skip
    stages["celery+ack+idle (rest)"] = max(0.0, total - sum(stages.values()))
    return {
        "mean_batch": round(sum(sizes) / len(sizes), 1),
        "batches": len(sizes),
        "stages_pct": {k: round(100 * v / total, 1) for k, v in stages.items()},
    }


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the numeric fields over repeats, with the throughput spread."""
    out: dict[str, Any] = {"mode": rows[0]["mode"], "repeats": len(rows)}
    for key in ("texts_per_s", "p50_ms", "p95_ms", "p99_ms", "mean_batch", "worker_rss_mb",
                "jobs_per_envelope", "producer_cpu_us_per_job"):  # fmt: skip
        vals = [r[key] for r in rows if r.get(key) is not None]
        if vals:
            out[key] = round(statistics.median(vals), 1)
    tps = [r["texts_per_s"] for r in rows]
    out["spread"] = [min(tps), max(tps)]
    cores = [r["cores_used"] for r in rows if r.get("cores_used")]
    if cores:
        out["cores_used"] = {k: round(statistics.median(c[k] for c in cores), 2) for k in cores[0]}
    stages = [r["stages_pct"] for r in rows if r.get("stages_pct")]
    if stages:
        out["stages_pct"] = {
            k: round(statistics.median(s[k] for s in stages), 1) for k in stages[0]
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the datasets' folder (docs/development.md: where the public datasets come from)",
    )
    ap.add_argument(
        "--train",
        type=Path,
        default=None,
        help="trains the bundle (default: DATA_DIR/ag_news_small/train.csv)",
    )
    ap.add_argument(
        "--texts",
        type=Path,
        default=None,
        help="texts to classify (default: DATA_DIR/ag_news_small/test.csv)",
    )
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--naive-n", type=int, default=2_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--processes", type=int, default=2, help="worker processes × 1 thread")
    ap.add_argument("--producers", type=int, default=3)
    ap.add_argument("--linger-ms", type=float, default=5.0)
    ap.add_argument("--light-rate", type=float, default=20.0)
    ap.add_argument("--light-s", type=float, default=30.0)
    ap.add_argument("--modes", default="ceiling,bulk,producer,producer_gc,raw,light,naive")
    ap.add_argument(
        "--broker", default="redis",
        help="redis, sentinel or rabbitmq, or a comma-separated list run in one session against "
        "one ceiling (each a private server started for the run)",
    )  # fmt: skip
    ap.add_argument(
        "--no-int8", dest="int8", action="store_false",
        help="skip the second pass with TEXTLSTM_WORKER_QUANTIZE=int8 (ceiling and workers)",
    )  # fmt: skip
    ap.add_argument(
        "--worker-setting", action="append", default=[], metavar="NAME=VALUE",
        help="a worker setting for this run, e.g. worker_batch_max_items=512 (repeatable)",
    )  # fmt: skip
    ap.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--quick", action="store_true", help="300 texts, 1 repeat: a smoke run")
    ap.add_argument("--out", type=Path, default=None, help="results stem")
    args = ap.parse_args()
    if args.quick:
        args.n, args.naive_n, args.repeats, args.light_s, args.timeout = 300, 150, 1, 3.0, 120
        args.train = ROOT / "examples/data/news_train.csv"
        args.texts = ROOT / "examples/data/news_test.csv"
    brokers = [b.strip() for b in args.broker.split(",") if b.strip()]
    if not brokers or set(brokers) - set(BROKERS) or len(set(brokers)) < len(brokers):
        ap.error(f"--broker {args.broker!r}: one or more of {', '.join(BROKERS)}, each once")
    if not args.quick and (args.train is None or args.texts is None):
        if args.data_dir is None:
            ap.error("--data-dir is required (or --train and --texts, or --quick)")
        args.train = args.train or args.data_dir / "ag_news_small" / "train.csv"
        args.texts = args.texts or args.data_dir / "ag_news_small" / "test.csv"
    stem = "pipeline" if brokers == ["redis"] else "pipeline_brokers"
    args.out = args.out or RESULTS / (f"{stem}_quick" if args.quick else stem)
    modes = set(args.modes.split(","))
    texts = repeated_texts(args.texts, args.n)
    bundle = bundle_for(args)
    results: dict[str, list[dict[str, Any]]] = {}
    started = time.monotonic()

    if "ceiling" in modes:
        splits = [(1, 1, "none"), (1, 2, "none"), (args.processes, 1, "none")]
        splits += [(args.processes, 1, "int8")] if args.int8 else []
        for _ in range(args.repeats):
            for procs, threads, quantize in splits:
                key = f"ceiling {procs}x{threads}" + (" int8" if quantize == "int8" else "")
                tps = round(ceiling(bundle, texts, procs, threads, quantize), 1)
                results.setdefault(key, []).append({"mode": key, "texts_per_s": tps})
                print(json.dumps({"mode": key, "texts_per_s": tps}), flush=True)

    if brokers == ["redis"]:  # the run as it always was: one Redis, the same report
        run_on_redis(args, modes, texts, bundle, results)
    else:
        run_on_brokers(args, brokers, modes, texts, bundle, results)

    summary = {k: median_row(v) for k, v in results.items()}
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s), shared with other work",
        "command": "python bench/pipeline.py" + (" --quick" if args.quick else ""),
        "config": config_shown(args),
        "settings": worker_settings(args.worker_setting),
        "wall_s": round(time.monotonic() - started, 1),
        "summary": summary,
        "ratios": ratios(summary, args),
        "runs": results,
    }
    if brokers != ["redis"]:
        report["command"] += f" --broker {','.join(brokers)}"
        report["brokers"] = broker_report(summary, results, brokers, modes, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    text = render(report, args) if brokers == ["redis"] else render_brokers(report, args)
    args.out.with_suffix(".md").write_text(text)
    print(args.out.with_suffix(".md").read_text())


def config_shown(args: argparse.Namespace) -> dict[str, str]:
    """The arguments as the report records them: paths in the datasets' folder as `DATA/…`
    (the --data-dir placeholder: where it is on a machine is no part of a result), others
    from the repository root (`shown`)."""
    out: dict[str, str] = {}
    data = args.data_dir.resolve() if args.data_dir else None
    for key, value in vars(args).items():
        if key == "data_dir":
            continue
        if isinstance(value, Path) and data and value.resolve().is_relative_to(data):
            out[key] = str(Path("DATA") / value.resolve().relative_to(data))
        else:
            out[key] = shown(value)
    return out


@contextmanager
def own_broker(kind: str, work: Path) -> Iterator[tuple[str, dict[str, Any], set[int]]]:
    """A private broker of `kind` for the duration: its URL, the transport options its
    clients need, and the process groups whose CPU is counted as the broker's where the
    machine-wide split (bench.common.cpu_snapshot, which counts every redis-server as
    "redis") does not see it: the RabbitMQ node's."""
    if kind == "redis":
        with own_redis(work, append_only=False) as url:
            yield url, {}, set()
    elif kind == "sentinel":
        from textlstm.testing.sentinel import OwnSentinelSet

        # Production-like failure detection (5 s): no failover is wanted during a run.
        sentinels = OwnSentinelSet(work / "sentinel", down_after_ms=5000, failover_timeout_ms=10000)
        try:
            sentinels.start()
            yield sentinels.url, sentinels.transport_options, set()
        finally:
            sentinels.close()
    elif kind == "rabbitmq":
        from textlstm.testing.rabbitmq import OwnRabbitMQ

        with OwnRabbitMQ(work / "rabbitmq") as node:
            assert node.proc is not None  # started: its own session, so its own group
            yield node.url, {}, {node.proc.pid}
    else:
        raise SystemExit(f"--broker {kind!r}: expected one of {', '.join(BROKERS)}")


def not_applicable(broker: str, mode: str) -> str | None:
    """Why `mode` does not run on `broker`, or None when it does (int8 rows by their base)."""
    return NOT_ON.get("int8" if mode.endswith(" int8") else mode, {}).get(broker)


Keep = Any  # (mode, row) -> None: files a row under its broker and mode


def open_bench(
    stack: ExitStack, args: argparse.Namespace, broker: str, work: Path, bundle: Path
) -> Bench:
    """`broker`'s own server(s), a fresh database with the bundle registered, and a Bench on
    them, all closed by `stack` (workers first, then the database, then the broker)."""
    from textlstm.store.registry import register_bundle

    url, options, broker_groups = stack.enter_context(own_broker(broker, work))
    db_url = stack.enter_context(throwaway_database(args.pg_admin_url, "textlstm_pipeline"))
    b = Bench(args, db_url, url, work, options)
    b.broker_groups = broker_groups
    stack.callback(b.engine.dispose)
    stack.callback(b.stop_workers)
    with b.sessions.begin() as s:
        register_bundle(session=s, path=bundle, name=MODEL, aliases=["production"])
    return b


def int8_and_naive(
    b: Bench, args: argparse.Namespace, modes: set[str], texts: list[str], keep: Keep, int8: bool
) -> None:
    """The int8 pass (the same modes on workers with int8 weights) when `int8`, and the naive
    baseline when `modes` has it."""
    if int8 and modes & {"bulk", "producer", "raw"}:
        b.env["TEXTLSTM_WORKER_QUANTIZE"] = "int8"  # the same run, int8 weights
        b.ours()
        b.bulk(texts[: min(len(texts), 512)])
        for _ in range(args.repeats):
            for mode in ("bulk", "producer", "raw"):
                if mode in modes:
                    keep(f"{mode} int8", {**getattr(b, mode)(texts), "mode": f"{mode} int8"})
        b.stop_workers()
        b.env["TEXTLSTM_WORKER_QUANTIZE"] = "none"
    if "naive" in modes:
        b.tutorial()
        for _ in range(args.repeats):
            keep("naive", b.naive(texts[: args.naive_n]))
        b.stop_workers()


def run_on_redis(
    args: argparse.Namespace,
    modes: set[str],
    texts: list[str],
    bundle: Path,
    results: dict[str, list[dict[str, Any]]],
) -> None:
    """The run as it always was (`--broker redis`): every mode on one private Redis."""

    def keep(mode: str, row: dict[str, Any]) -> None:
        results.setdefault(mode, []).append(row)

    with ExitStack() as stack:
        b = open_bench(stack, args, "redis", scratch_dir("textlstm-pipeline-"), bundle)
        if modes & {"bulk", "producer", "producer_gc", "raw", "light"}:
            b.ours()
            b.bulk(texts[: min(len(texts), 512)])  # warm-up: first batches, connections
            for _ in range(args.repeats):
                for mode in ("bulk", "producer", "producer_gc", "raw"):
                    if mode in modes:
                        keep(mode, getattr(b, mode)(texts))
            if "light" in modes:
                keep("light", b.light(texts))
            b.stop_workers()
        int8_and_naive(b, args, modes, texts, keep, args.int8)


def run_on_brokers(
    args: argparse.Namespace,
    brokers: list[str],
    modes: set[str],
    texts: list[str],
    bundle: Path,
    results: dict[str, list[dict[str, Any]]],
) -> None:
    """The broker modes on every broker of `brokers`, rows filed as `<broker> <mode>`.

    Every broker is up at once, each with its own workers and database, and each repeat runs
    a mode on every broker in turn (the order rotated from one repeat to the next), so load
    that comes and goes on a shared machine falls on all brokers alike; idle workers of the
    other brokers cost all of them the same. Then, one broker at a time: light (latency at a
    low offered rate), and where they apply the int8 pass and the naive baseline."""
    on = {br: {m for m in modes if not_applicable(br, m) is None} for br in brokers}

    def keeper(broker: str) -> Keep:
        def keep(mode: str, row: dict[str, Any]) -> None:
            row["broker"] = broker
            results.setdefault(f"{broker} {mode}", []).append(row)

        return keep

    with ExitStack() as stack:
        benches: dict[str, Bench] = {}
        for broker in brokers:
            work = scratch_dir(f"textlstm-pipeline-{broker}-")
            benches[broker] = open_bench(stack, args, broker, work, bundle)
            benches[broker].record_send = True
        if modes & {"bulk", "producer", "producer_gc", "raw", "light"}:
            for b in benches.values():
                b.ours()
                b.bulk(texts[: min(len(texts), 512)])  # warm-up: first batches, connections
            for r in range(args.repeats):
                order = brokers[r % len(brokers) :] + brokers[: r % len(brokers)]
                for mode in ("bulk", "producer", "producer_gc", "raw"):
                    for broker in order:
                        if mode in on[broker]:
                            keeper(broker)(mode, getattr(benches[broker], mode)(texts))
            for broker in brokers:
                if "light" in on[broker]:
                    keeper(broker)("light", benches[broker].light(texts))
            for b in benches.values():
                b.stop_workers()
        for broker in brokers:
            int8 = args.int8 and not_applicable(broker, "bulk int8") is None
            int8_and_naive(benches[broker], args, on[broker], texts, keeper(broker), int8)


def worker_settings(overrides: list[str]) -> dict[str, Any]:
    """The batching settings the workers ran with: the defaults and any --worker-setting."""
    from textlstm.settings import Settings

    given = dict(o.partition("=")[::2] for o in overrides)
    s = Settings(_env_file=None, **given)  # type: ignore[call-arg]
    return {
        "worker_batch_max_items": s.worker_batch_max_items,
        "worker_forward_batch": s.worker_forward_batch,
        "worker_batch_max_tokens": s.worker_batch_max_tokens,
        "worker_batch_max_wait_ms": s.worker_batch_max_wait_ms,
        "worker_batch_idle_ms": s.worker_batch_idle_ms,
        "worker_prefetch": s.worker_prefetch,
        "worker_idle_poll_ms": s.worker_idle_poll_ms,
    }


def ratios(summary: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    ceilings = [
        v["texts_per_s"]
        for k, v in summary.items()
        if k.startswith("ceiling") and not k.endswith("int8")
    ]
    top = max(ceilings) if ceilings else None
    out: dict[str, Any] = {"ceiling_texts_per_s": top}

    def tps(mode: str) -> float | None:
        return summary.get(mode, {}).get("texts_per_s")

    for mode, target in (("bulk", 0.7), ("producer", 0.5), ("producer_gc", 0.5)):
        if top and tps(mode):
            r = round(tps(mode) / top, 2)  # type: ignore[operator]
            out[f"{mode}_vs_ceiling"] = {"ratio": r, "target": target, "met": r >= target}
    if tps("raw") and tps("naive"):
        r = round(tps("raw") / tps("naive"), 2)  # type: ignore[operator]
        batch = summary["raw"].get("mean_batch") or 0
        out["raw_vs_naive"] = {
            "ratio": r, "target": 2.0, "mean_batch": batch, "met": r >= 2.0 and batch >= 16,
        }  # fmt: skip
    int8_top = summary.get(f"ceiling {args.processes}x1 int8", {}).get("texts_per_s")
    for mode in ("bulk", "producer", "raw"):
        q = tps(f"{mode} int8")
        if q and tps(mode):
            out[f"{mode}_int8"] = {
                "vs_fp32": round(q / tps(mode), 2),  # type: ignore[operator]
                "vs_fp32_ceiling": round(q / top, 2) if top else None,
                "vs_int8_ceiling": round(q / int8_top, 2) if int8_top else None,
            }
    if "light" in summary:
        max_wait = worker_settings(args.worker_setting)["worker_batch_max_wait_ms"]
        budget = args.linger_ms + max_wait + 100
        p99 = summary["light"]["p99_ms"]
        out["light_p99"] = {"p99_ms": p99, "budget_ms": budget, "met": p99 <= budget}
    return out


def broker_report(
    summary: dict[str, Any],
    runs: dict[str, list[dict[str, Any]]],
    brokers: list[str],
    modes: set[str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One row per broker × mode (texts/s, ratio to the one ceiling, latency, or why the mode
    does not run there), and each broker's targets as `ratios` reckons them for Redis."""
    ceilings = {k: v for k, v in summary.items() if k.startswith("ceiling")}
    top = ratios(ceilings, args)["ceiling_texts_per_s"]
    order = ["bulk", "producer", "producer_gc", "raw", "light", "naive"]
    order += [f"{m} int8" for m in ("bulk", "producer", "raw")] if args.int8 else []
    rows: list[dict[str, Any]] = []
    targets: dict[str, Any] = {}
    for broker in brokers:
        own = {k.removeprefix(f"{broker} "): v for k, v in summary.items()
               if k.startswith(f"{broker} ")}  # fmt: skip
        targets[broker] = ratios({**ceilings, **own}, args)
        for mode in order:
            if mode.removesuffix(" int8") not in modes:
                continue
            why = not_applicable(broker, mode)
            v = own.get(mode)
            if why or v is None:
                rows.append({"broker": broker, "mode": mode, "na": why or "did not run"})
                continue
            sent = median_of(runs.get(f"{broker} {mode}", []), "send_s")
            rows.append({
                "broker": broker, "mode": mode, "texts_per_s": v["texts_per_s"],
                # light offers a fixed rate: its texts/s is that rate, not a capacity
                "vs_ceiling": round(v["texts_per_s"] / top, 2) if top and mode != "light" else None,
                "p50_ms": v.get("p50_ms"), "p99_ms": v.get("p99_ms"),
                "mean_batch": v.get("mean_batch"),
                # light is paced; the producer modes' send() only starts their processes
                "send_s": sent if mode.removesuffix(" int8") in ("bulk", "raw", "naive") else None,
            })  # fmt: skip
    return {"ceiling_texts_per_s": top, "notes": {b: BROKER_NOTES[b] for b in brokers},
            "rows": rows, "targets": targets}  # fmt: skip


def median_of(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return round(statistics.median(vals), 3) if vals else None


def render_brokers(r: dict[str, Any], args: argparse.Namespace) -> str:
    """The broker comparison: one table of broker × mode, then what each broker adds."""
    b = r["brokers"]
    lines = [
        f"# Pipeline on each broker ({args.n:,} texts, {args.repeats} repeat(s))",
        "",
        f"`{r['command']}` on {r['when']}, {r['machine']}; {r['wall_s']:.0f} s in all. "
        f"Texts: `{args.texts.parent.name}/{args.texts.name}` repeated; workers: "
        f"{args.processes} processes × 1 thread, fp32, PostgreSQL; each broker a private one "
        "started for the run, on loopback. One ceiling for every broker: "
        f"{b['ceiling_texts_per_s']} texts/s (`Classifier.predict` in-process, best split). "
        "int8 rows are against that fp32 ceiling too (int8 in-process: "
        f"{r['summary'].get(f'ceiling {args.processes}x1 int8', {}).get('texts_per_s')} texts/s). "
        "Medians of the repeats. Latency: per item, submitted → row written. "
        "send s (bulk, raw): how long the producing side took to have every text accepted "
        "(for the producer modes, see their CPU per job below).",
        "",
        "| broker | mode | texts/s | × ceiling | p50 ms | p99 ms | mean batch | send s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in b["rows"]:
        if "na" in row:
            lines.append(f"| {row['broker']} | {row['mode']} | n/a ({row['na']}) | | | | | |")
            continue
        send = "" if row.get("send_s") is None else f"{row['send_s']:.2f}"
        ratio = "offered rate" if row["vs_ceiling"] is None else row["vs_ceiling"]
        lines.append(
            f"| {row['broker']} | {row['mode']} | {row['texts_per_s']:,.0f} | "
            f"{ratio} | {row['p50_ms']} | {row['p99_ms']} | "
            f"{row['mean_batch']} | {send} |"
        )
    lines += ["", "## What each broker does per message", ""]
    lines += [f"- **{k}**: {v}." for k, v in b["notes"].items()]
    lines += ["", "## Targets (as for Redis), per broker", "",
              "| broker | bulk ≥ 0.7 × ceiling | single-text jobs (producer) ≥ 0.5 × ceiling | "
              "light p99 ≤ budget |", "|---|---|---|---|"]  # fmt: skip
    for broker, t in b["targets"].items():

        def cell(key: str, t: dict[str, Any] = t) -> str:
            if key not in t:
                return "n/a"
            v = t[key]
            got = f"{v['p99_ms']} ms of {v['budget_ms']:g}" if "p99_ms" in v else f"{v['ratio']}×"
            return f"{got} {'yes' if v['met'] else '**no**'}"

        lines.append(
            f"| {broker} | {cell('bulk_vs_ceiling')} | {cell('producer_vs_ceiling')} | "
            f"{cell('light_p99')} |"
        )
    s = r["summary"]
    stages = {k: v["stages_pct"] for k, v in s.items() if v.get("stages_pct")}
    if stages:
        cols = list(next(iter(stages.values())))
        lines += [
            "",
            "## Where the workers' time goes (% of processes × wall time)",
            "",
            "| broker mode | " + " | ".join(cols) + " |",
            "|---|" + "---:|" * len(cols),
            *[f"| {k} | " + " | ".join(str(v[c]) for c in cols) + " |" for k, v in stages.items()],
        ]
    cores = {k: v["cores_used"] for k, v in s.items() if v.get("cores_used")}
    if cores:
        cols = list(dict.fromkeys(c for v in cores.values() for c in v))  # + rabbitmq
        lines += [
            "",
            f"## Where the machine's CPU goes (cores used on average, of {os.cpu_count()})",
            "",
            "| broker mode | " + " | ".join(cols) + " |",
            "|---|" + "---:|" * len(cols),
            *[
                f"| {k} | " + " | ".join(str(v.get(c, "")) for c in cols) + " |"
                for k, v in cores.items()
            ],
        ]
    prod = {k: v for k, v in s.items() if v.get("producer_cpu_us_per_job")}
    if prod:
        lines += [
            "",
            f"Producers ({r['config']['producers']} processes): "
            + "; ".join(
                f"{k} {v['jobs_per_envelope']} jobs per envelope, "
                f"{v['producer_cpu_us_per_job']} µs of producer CPU per job"
                for k, v in prod.items()
            )
            + ".",
        ]
    lines += ["", "Worker settings: " + ", ".join(f"{k}={v}" for k, v in r["settings"].items()),
              ""]  # fmt: skip
    return "\n".join(lines)


def render(r: dict[str, Any], args: argparse.Namespace) -> str:
    s, ratio = r["summary"], r["ratios"]
    lines = [
        f"# Pipeline vs ceiling vs naive ({args.n:,} texts, {args.repeats} repeat(s))",
        "",
        f"`{r['command']}` on {r['when']}, {r['machine']}; {r['wall_s']:.0f} s in all. "
        f"Texts: `{args.texts.parent.name}/{args.texts.name}` repeated; workers: "
        f"{args.processes} processes × 1 thread, PostgreSQL, Redis without persistence; "
        "fp32 weights except the rows marked int8 (TEXTLSTM_WORKER_QUANTIZE=int8). "
        f"Medians of the repeats; spread = min–max texts/s.",
        "",
        "| mode | texts/s | spread | mean batch | p50 ms | p95 ms | p99 ms | worker RSS MB |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for k, v in s.items():
        lines.append(
            f"| {k} | {v['texts_per_s']:,.0f} | {v['spread'][0]:,.0f}–{v['spread'][1]:,.0f} | "
            f"{v.get('mean_batch', '')} | {v.get('p50_ms', '')} | {v.get('p95_ms', '')} | "
            f"{v.get('p99_ms', '')} | {v.get('worker_rss_mb', '')} |"
        )
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    names = {
        "bulk_vs_ceiling": "bulk ≥ 0.7 × ceiling",
        "producer_vs_ceiling": "single-text jobs via Producer ≥ 0.5 × ceiling",
        "producer_gc_vs_ceiling": "the same, producer processes' GC tuned (README)",
        "raw_vs_naive": "raw one-text messages ≥ 2 × naive, mean batch ≥ 16",
        "light_p99": "light-load p99 ≤ linger + worker max wait + 100 ms",
    }
    for key, label in names.items():
        if key in ratio:
            v = ratio[key]
            got = (
                f"{v['p99_ms']} ms (budget {v['budget_ms']:g} ms)"
                if key == "light_p99"
                else f"{v['ratio']}×" + (f", mean batch {v['mean_batch']}" if "mean_batch" in v
                                          else "")
            )  # fmt: skip
            lines.append(f"| {label} | {got} | {'yes' if v['met'] else '**no**'} |")
    lines += ["", f"Ceiling used for the ratios: {ratio.get('ceiling_texts_per_s')} texts/s.", ""]
    int8 = {k: v for k, v in ratio.items() if k.endswith("_int8")}
    if int8:
        lines += [
            "## int8 weights (TEXTLSTM_WORKER_QUANTIZE=int8), same run",
            "",
            "| mode | int8 / fp32 | int8 / fp32 ceiling | int8 / int8 ceiling |",
            "|---|---:|---:|---:|",
            *[
                f"| {k.removesuffix('_int8')} | {v['vs_fp32']}× | {v['vs_fp32_ceiling']}× | "
                f"{v['vs_int8_ceiling']}× |"
                for k, v in int8.items()
            ],
            "",
        ]
    stages = {k: v["stages_pct"] for k, v in s.items() if v.get("stages_pct")}
    if stages:
        cols = list(next(iter(stages.values())))
        lines += [
            "## Where the workers' time goes (% of processes × wall time)",
            "",
            "| mode | " + " | ".join(cols) + " |",
            "|---|" + "---:|" * len(cols),
            *[f"| {k} | " + " | ".join(str(v[c]) for c in cols) + " |" for k, v in stages.items()],
            "",
        ]
    cores = {k: v["cores_used"] for k, v in s.items() if v.get("cores_used")}
    if cores:
        cols = list(next(iter(cores.values())))
        lines += [
            f"## Where the machine's CPU goes (cores used on average, of {os.cpu_count()})",
            "",
            "| mode | " + " | ".join(cols) + " |",
            "|---|" + "---:|" * len(cols),
            *[f"| {k} | " + " | ".join(str(v[c]) for c in cols) + " |" for k, v in cores.items()],
            "",
        ]
    prod = {k: v for k, v in s.items() if v.get("producer_cpu_us_per_job")}
    if prod:
        lines += [
            f"Producers ({r['config']['producers']} processes, each staying up until its run is "
            "measured): "
            + "; ".join(
                f"{k} {v['jobs_per_envelope']} jobs per envelope, "
                f"{v['producer_cpu_us_per_job']} µs of producer CPU per job"
                for k, v in prod.items()
            )
            + ".",
            "",
        ]
    lines += ["Worker settings: " + ", ".join(f"{k}={v}" for k, v in r["settings"].items()), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
