"""The alternatives `bench/worker_throughput.py` compares against our micro-batching strategy.

- `naive_app`: Celery's default strategy, prefork pool, acks_late; each message is one batch
  (what you get without an aggregator: one forward pass and one commit per message).
- `cb_app` (in `bench/cb_variant.py`): celery-batches' `Batches` task; imported only when
  celery_batches is importable (it pins celery < 5.7, so the bench puts it on PYTHONPATH).

Both call the same `classify_batch` and log the same "batch size=" line as the real worker.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from textlstm.messages import TASK_NAME, ClassifyMessage, Limits, parse_message
from textlstm.serving.batcher import Batcher
from textlstm.serving.service import classify_batch
from textlstm.settings import get_settings
from worker.app import celery_config

log = logging.getLogger("textlstm.worker")
_runtime: Any = None


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


def run_messages(messages: list[ClassifyMessage], max_items: int) -> None:
    """Cut messages into micro-batches of at most max_items and store each one."""
    rt = runtime()
    b = Batcher(max_items=max_items, max_tokens=10**9, max_wait_s=0.0)
    for m in messages:
        b.add(m, None, time.monotonic())
    while (batch := b.take(time.monotonic(), force=True)) is not None:
        r = classify_batch(
            batch, models=rt.models, session_factory=rt.session_factory, retry=rt.retry
        )
        b.complete(batch)
        log.info("batch size=%d messages=%d forward_ms=%.1f", r.items, r.messages, r.forward_ms)


def variant_config(**overrides: Any) -> dict[str, Any]:
    return {**celery_config(get_settings()), "worker_pool": "prefork", **overrides}


naive_app = Celery("naive", set_as_current=False)
naive_app.add_defaults(lambda: variant_config(worker_prefetch_multiplier=4))


@naive_app.task(name=TASK_NAME, acks_late=True, ignore_result=True)
def naive(body: Any) -> None:
    run_messages([parse_message(body, limits=Limits.from_settings(get_settings()))], 128)
