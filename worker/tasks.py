"""The classify task: a thin adapter from a micro-batch to `textlstm.serving.service`.

Its custom strategy (`worker.strategy.strategy`) decodes and validates messages and forms the
micro-batches; the task body only hands one to the service. Results go to SQL, never to Celery.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from celery import Task

from textlstm.serving.microbatch import MicroBatch
from textlstm.serving.service import BatchReport, classify_batch
from textlstm.wire.messages import TASK_NAME
from worker.app import app
from worker.runtime import Runtime


class ClassifyTask(Task):
    """Celery instantiates a task once per process: the runtime is built there, lazily."""

    Strategy = "worker.strategy:strategy"
    ignore_result = True

    @cached_property
    def runtime(self) -> Runtime:
        from textlstm.settings import get_settings

        return Runtime.build(get_settings())

    def run_batch(self, batch: MicroBatch, *, fail_reason: str | None = None) -> BatchReport:
        return self.run(batch, fail_reason=fail_reason)


@app.task(name=TASK_NAME, base=ClassifyTask, bind=True)
def classify(self: ClassifyTask, batch: MicroBatch, *, fail_reason: str | None = None) -> Any:
    rt = self.runtime
    return classify_batch(
        batch,
        models=rt.models,
        session_factory=rt.session_factory,
        retry=rt.retry,
        fail_reason=fail_reason,
        forward_batch=rt.settings.worker_forward_batch,
    )
