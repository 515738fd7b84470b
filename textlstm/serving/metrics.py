"""Prometheus metrics of the worker, safe across the processes of one `textlstm-admin worker`.

Each worker process records into prometheus-client's multiprocess files when the supervisor
gave it `PROMETHEUS_MULTIPROC_DIR` (one directory per supervisor), and the supervisor serves
the sum of all of them on one port (`serve`). Counters and histograms of a process that died
are kept (totals never go backwards); gauges are `livesum`/`livemax`, so a dead process's
device or loaded model disappears once the supervisor marks it dead. A worker process started
by hand (no supervisor) serves its own registry on `metrics_port + process index`.

The metrics are created on first use (`get_metrics()`), never at import: in multiprocess mode
creating one writes a file.

| metric | type | labels |
|---|---|---|
| textlstm_items_processed_total | counter | model: items stored with a prediction |
| textlstm_items_failed_total | counter | model, reason (error, expired, unavailable) |
| textlstm_items_cancelled_total | counter | items of cancelled jobs acked without running |
| textlstm_batch_size | histogram | items per micro-batch |
| textlstm_queue_wait_seconds | histogram | per item: submitted → its batch started |
| textlstm_inference_seconds | histogram | forward pass per micro-batch |
| textlstm_db_write_seconds | histogram | the batch's transaction, retries included |
| textlstm_messages_rejected_total | counter | malformed messages |
| textlstm_messages_dead_lettered_total | counter | stage: moved to the dead-letter list |
| textlstm_model_load_seconds | gauge (livemax) | model: time to fetch and load it |
| textlstm_model_loaded | gauge (livesum) | model: processes holding it loaded |
| textlstm_worker_processes | gauge (livesum) | device: live worker processes per device |
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 96, 128, 192, 256, 512)
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
FORWARD_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


@dataclass(frozen=True)
class WorkerMetrics:
    processed: Any
    failed: Any
    batch_size: Any
    queue_wait: Any
    inference: Any
    db_write: Any
    rejected: Any
    dead_lettered: Any
    load_seconds: Any
    loaded: Any
    processes: Any
    cancelled: Any

    def observe_batch(self, report: Any) -> None:
        """Record one committed micro-batch (a `service.BatchReport`)."""
        model = report.model or report.model_ref
        self.batch_size.observe(report.items)
        ok = report.ok
        if ok:
            self.processed.labels(model).inc(ok)
        if report.expired:
            self.failed.labels(model, "expired").inc(report.expired)
        other = report.errors - report.expired
        if other:
            reason = "error" if report.model else "unavailable"
            self.failed.labels(model, reason).inc(other)
        if report.model and report.items > report.expired:
            self.inference.observe(report.forward_ms / 1000)
        self.db_write.observe(report.db_ms / 1000)
        for wait in report.queue_wait_s:
            self.queue_wait.observe(max(0.0, wait))

    def model_loaded(self, ref: str, seconds: float) -> None:
        self.load_seconds.labels(ref).set(seconds)
        self.loaded.labels(ref).set(1)

    def model_evicted(self, ref: str) -> None:
        self.loaded.labels(ref).set(0)

    def process_started(self, device: str) -> None:
        self.processes.labels(device).set(1)


@lru_cache(maxsize=1)
def get_metrics() -> WorkerMetrics:
    """This process's metrics, created on first use."""
    from prometheus_client import Counter, Gauge, Histogram

    return WorkerMetrics(
        processed=Counter(
            "textlstm_items_processed_total", "Items stored with a prediction.", ["model"]
        ),
        failed=Counter(
            "textlstm_items_failed_total",
            "Items stored as errors: error (bad text, internal), expired (deadline passed), "
            "unavailable (model could not be resolved or loaded).",
            ["model", "reason"],
        ),
        batch_size=Histogram(
            "textlstm_batch_size", "Items per micro-batch.", buckets=BATCH_BUCKETS
        ),
        queue_wait=Histogram(
            "textlstm_queue_wait_seconds",
            "Per item: from submission to the start of its micro-batch.",
            buckets=WAIT_BUCKETS,
        ),
        inference=Histogram(
            "textlstm_inference_seconds",
            "Forward pass of one micro-batch.",
            buckets=FORWARD_BUCKETS,
        ),
        db_write=Histogram(
            "textlstm_db_write_seconds",
            "The micro-batch's transaction (retries during an outage included).",
            buckets=FORWARD_BUCKETS + (10, 30, 60),
        ),
        rejected=Counter("textlstm_messages_rejected_total", "Malformed messages rejected."),
        dead_lettered=Counter(
            "textlstm_messages_dead_lettered_total",
            "Messages (or envelope parts) moved to the dead-letter list, by stage: envelope, "
            "body, part, store, poison.",
            ["stage"],
        ),
        load_seconds=Gauge(
            "textlstm_model_load_seconds",
            "Time to fetch and load a model version (longest among live processes).",
            ["model"],
            multiprocess_mode="livemax",
        ),
        loaded=Gauge(
            "textlstm_model_loaded",
            "Worker processes holding this model version loaded.",
            ["model"],
            multiprocess_mode="livesum",
        ),
        processes=Gauge(
            "textlstm_worker_processes",
            "Live worker processes per device.",
            ["device"],
            multiprocess_mode="livesum",
        ),
        cancelled=Counter(
            "textlstm_items_cancelled_total",
            "Items of cancelled jobs acked without running the model (their rows were stored "
            "as cancelled by the cancel).",
        ),
    )


def serve(port: int, addr: str, *, multiproc_dir: str | None = None) -> Any:
    """Serve /metrics on `port` in a daemon thread; with `multiproc_dir`, the sum over every
    process writing there (the supervisor), else this process's own registry. Returns the
    server (call `.shutdown()` to stop it)."""
    from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

    registry: Any = REGISTRY
    if multiproc_dir is not None:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiproc_dir)
    server, _thread = start_http_server(port, addr, registry=registry)
    return server


def mark_dead(pid: int, multiproc_dir: str) -> None:
    """Drop a dead process's live gauges (its counters and histograms stay in the totals)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, multiproc_dir)
