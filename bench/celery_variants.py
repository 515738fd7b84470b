"""The alternatives `bench/worker_throughput.py` compares against our micro-batching strategy.

- `naive_app`: Celery's default strategy, prefork pool, acks_late; each message is one batch
  (what you get without an aggregator: one forward pass and one commit per message).
- `cb_app` (in `bench/cb_variant.py`): celery-batches' `Batches` task; imported only when
  celery_batches is importable (it pins celery < 5.7, so the bench puts it on PYTHONPATH).

Both call the same `classify_batch` and, with TEXTLSTM_WORKER_STATS_DIR set, write the same
per-batch records as the real worker (`textlstm.serving.stages`, `source` naming the variant;
decode and fetch are not timed here, so they read 0).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from textlstm.serving.microbatch import Batcher
from textlstm.serving.service import classify_batch
from textlstm.serving.stages import BatchStats, StatsWriter
from textlstm.settings import get_settings
from textlstm.wire.messages import TASK_NAME, ClassifyMessage, Limits, parse_message
from worker.app import celery_config

log = logging.getLogger("textlstm.worker")
_runtime: Any = None
_stats: StatsWriter | None = None


def runtime() -> Any:
    global _runtime
    if _runtime is None:
        from worker.runtime import Runtime

        _runtime = Runtime.build(get_settings())
        warm = get_settings().worker_warmup_model
        if warm:
            _runtime.warm_up(warm)
    return _runtime


@worker_process_init.connect
def _init(**_: Any) -> None:
    runtime()  # load the model in each pool child before it takes work


def stats_writer() -> StatsWriter | None:
    """This process's writer of batch records, None when no stats folder is set."""
    global _stats
    folder = get_settings().worker_stats_dir
    if _stats is None and folder is not None:
        _stats = StatsWriter(folder)
    return _stats


def run_messages(messages: list[ClassifyMessage], max_items: int, source: str) -> None:
    """Cut messages into micro-batches of at most max_items and store each one; `source`
    names the variant in the batch records."""
    rt = runtime()
    stats = stats_writer()
    b = Batcher(max_items=max_items, max_tokens=10**9, max_wait_s=0.0)
    for m in messages:
        b.add(m, None, time.monotonic())
    while (batch := b.take(time.monotonic(), force=True)) is not None:
        r = classify_batch(
            batch, models=rt.models, session_factory=rt.session_factory, retry=rt.retry
        )
        b.complete(batch)
        log.info("batch size=%d messages=%d forward_ms=%.1f", r.items, r.messages, r.forward_ms)
        if stats is not None:
            stats.write(BatchStats.from_report(r, source=source))


def variant_config(**overrides: Any) -> dict[str, Any]:
    return {**celery_config(get_settings()), "worker_pool": "prefork", **overrides}


naive_app = Celery("naive", set_as_current=False)
naive_app.add_defaults(lambda: variant_config(worker_prefetch_multiplier=4))


@naive_app.task(name=TASK_NAME, acks_late=True, ignore_result=True)
def naive(body: Any) -> None:
    message = parse_message(body, limits=Limits.from_settings(get_settings()))
    run_messages([message], 128, "naive")


# -- the tutorial way (bench/pipeline.py's "naive" mode) ------------------------------------
# One plain task per text, as the classic "serve a PyTorch model with Celery" tutorial does:
# prefork pool, default prefetch and acks, the model loaded once per child, `predict` at batch
# size 1, one INSERT and one COMMIT per text. It gets the model through our registry (loading
# is not what is measured) and writes the same `predictions` rows under a job the bench made.
tutorial_app = Celery("tutorial", set_as_current=False)
tutorial_app.add_defaults(
    lambda: {
        "broker_url": get_settings().broker_url,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "broker_connection_retry_on_startup": True,
    }
)
_tutorial: dict[str, Any] = {}


def tutorial_model() -> tuple[Any, Any, int]:
    """The classifier, a session factory and the version id, once per pool child (the model
    named by TEXTLSTM_WORKER_WARMUP_MODEL, already loaded by `_init`)."""
    if not _tutorial:
        import torch

        from textlstm.store.db import make_engine, make_session_factory

        torch.set_num_threads(1)
        s = get_settings()
        loaded = runtime().models.get(s.worker_warmup_model or "")
        _tutorial.update(
            clf=loaded.classifier,
            sessions=make_session_factory(make_engine(s.database_url)),
            version=loaded.version_id,
        )
    return _tutorial["clf"], _tutorial["sessions"], _tutorial["version"]


@tutorial_app.task(name="tutorial.classify", ignore_result=True)
def tutorial_classify(job_id: str, index: int, text: str) -> None:
    import uuid

    from textlstm.store.predictions import PredictionRecord, add_prediction

    clf, sessions, version = tutorial_model()
    p = clf.predict([text], batch_size=1)[0]
    record = PredictionRecord(
        item_index=index, status="ok" if p.label else "error", label=p.label, score=p.score,
        probabilities=p.probabilities, error=p.error,
    )  # fmt: skip
    with sessions() as session:
        add_prediction(
            session=session, job_id=uuid.UUID(job_id), record=record, model_version_id=version
        )
        session.commit()
