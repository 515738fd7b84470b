"""What one worker process builds once, lazily, when it starts consuming: its device and thread
count, a database engine, the model cache and the retry policy.

Built in the process that uses it (never at import, never in a parent before a fork): CUDA
contexts and database connections are not fork-safe.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from textlstm.serving.models import ModelCache, make_loader
from textlstm.serving.retry import RetryPolicy
from textlstm.settings import Settings
from worker.kombu_seam import worker_stopping

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    device: str
    threads: int
    engine: Engine
    session_factory: sessionmaker[Session]
    models: ModelCache
    retry: RetryPolicy
    notifier: Any = None  # textlstm.serving.notify.Notifier, built with the runtime

    def notify(self, finished: Sequence[Any]) -> None:
        """Publish the final events of jobs a commit just finished (never raises)."""
        if finished and self.notifier is not None:
            self.notifier.finished(finished)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        import torch

        from textlstm.serving.device import (
            assign_device,
            configure_process,
            cpu_threads,
            default_processes,
            parse_gpus,
            warn_cpu_fallback,
        )
        from textlstm.store.db import make_engine, make_session_factory

        gpus = parse_gpus(settings.worker_gpus)
        cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = settings.worker_process_index
        device = assign_device(
            settings.worker_device, process_index=index, gpus=gpus, cuda_count=cuda_count
        )
        warn_cpu_fallback(settings.worker_device, device, process_index=index)
        cores = os.cpu_count() or 1
        processes = settings.worker_concurrency or default_processes(
            settings.worker_device, gpus=gpus, cuda_count=cuda_count, cores=cores
        )
        threads = cpu_threads(cores=cores, processes=processes, requested=settings.worker_threads)
        configure_process(device, threads=threads)
        engine = make_engine(
            settings.database_url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms
        )
        factory = make_session_factory(engine)
        from textlstm.serving.metrics import get_metrics, serve

        metrics = get_metrics()
        metrics.process_started(device)
        if settings.metrics_port:  # started by hand: this process serves its own metrics
            port = settings.metrics_port + index
            serve(port, settings.metrics_addr)
            log.info("worker process %d: Prometheus metrics on port %d", index, port)
        models = ModelCache(
            session_factory=factory,
            cache_dir=settings.model_cache_dir,
            device=device,
            loader=make_loader(settings.worker_quantize),
            refresh_s=settings.worker_alias_refresh_s,
            capacity=settings.worker_model_cache_size,
            on_load=metrics.model_loaded,
            on_evict=metrics.model_evicted,
        )
        retry = RetryPolicy(
            initial_s=settings.worker_db_retry_initial_s,
            max_s=settings.worker_db_retry_max_s,
            should_stop=worker_stopping,
        )
        log.info(
            "worker process %d: device %s, %d torch thread(s) (%d process(es) on %d core(s))",
            index,
            device,
            threads if device == "cpu" else torch.get_num_threads(),
            processes,
            cores,
        )
        from textlstm.serving.notify import Notifier
        from textlstm.serving.webhooks import WebhookSender
        from textlstm.wire.redis_layout import broker_client, is_redis_url

        sender = WebhookSender.from_settings(factory, settings)
        sender.start()  # a daemon thread in this (already forked) process
        # Final events go out on Redis pub/sub; on another broker (amqp://) there are none and
        # waiters poll SQL, as they do whenever an event is missed.
        redis = broker_client(settings) if is_redis_url(settings.broker_url) else None
        notifier = Notifier(redis, settings.queue, sender)
        return cls(settings, device, threads, engine, factory, models, retry, notifier)

    def warm_up(self, ref: str) -> None:
        """Load `ref` and run one forward pass before taking work (first-batch latency)."""
        from textlstm.serving.retry import retrying

        model, _ = retrying(lambda: self.models.get(ref), policy=self.retry, what=f"warm-up {ref}")
        model.classifier.predict(["warm up"] * 8)
        log.info("warm-up done: %s on %s", model.ref, self.device)
