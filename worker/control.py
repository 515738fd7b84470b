"""A Celery remote-control (inspect) command that reports what this worker process serves.

`textlstm-admin status` broadcasts `textlstm_info` over Celery's pidbox (Redis pub/sub; it
works with `--without-gossip --without-mingle --without-heartbeat`, which only turn off
worker-to-worker chatter and event heartbeats). Each process answers from its event loop, so a
process inside a long batch or a database outage answers late or not at all within the probe's
timeout: the status command says so rather than guessing.

The command only reads state; it never builds the runtime (no model or database is touched).
"""

from __future__ import annotations

import os
from typing import Any

from celery.worker.control import inspect_command

from textlstm.wire.messages import TASK_NAME
from worker.kombu_seam import batching_of, consumed_queues


@inspect_command()
def textlstm_info(state: Any, **kwargs: Any) -> dict[str, Any]:
    """Device, loaded model versions, queues consumed and counters of this process."""
    consumer = state.consumer
    task = consumer.app.tasks.get(TASK_NAME)
    runtime = task.__dict__.get("runtime") if task is not None else None  # built lazily
    batching = batching_of(task)
    queues = consumed_queues(consumer)
    return {
        "pid": os.getpid(),
        "process_index": runtime.settings.worker_process_index if runtime else None,
        "device": runtime.device if runtime else None,
        "threads": runtime.threads if runtime else None,
        "models": runtime.models.loaded_refs if runtime else [],
        "queues": queues,
        "batches": batching.batches if batching else 0,
        "items": batching.items if batching else 0,
        "buffered_messages": len(batching.batcher) if batching else 0,
        "cancelled_items": batching.cancelled_items if batching else 0,
    }
