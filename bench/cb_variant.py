"""celery-batches variant for `bench/worker_throughput.py` (needs celery_batches importable)."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery_batches import Batches

from bench.celery_variants import run_messages, variant_config
from textlstm.settings import get_settings
from textlstm.wire.messages import TASK_NAME, Limits, parse_message

cb_app = Celery("cb", set_as_current=False)
# prefetch x concurrency must exceed flush_every, or batches never fill (celery-batches docs).
cb_app.add_defaults(lambda: variant_config(worker_prefetch_multiplier=256))


@cb_app.task(
    name=TASK_NAME,
    base=Batches,
    flush_every=128,
    flush_interval=0.05,
    acks_late=True,
    ignore_result=True,
)
def cb(requests: list[Any]) -> None:
    limits = Limits.from_settings(get_settings())
    run_messages([parse_message(r.args[0], limits=limits) for r in requests], 128, "cb")
