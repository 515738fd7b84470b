"""The Celery app. `celery -A worker.app worker` finds `app` here.

Configuration is added lazily (`add_defaults`), so importing this module reads no settings and
opens no connection; the worker process reads them when it starts.

- JSON only (`task_serializer`, `accept_content`): a pickle message is refused, never run; a
  worker whose final configuration accepts more refuses to start (`worker.guards`), as does
  one whose kombu or Celery lacks a private name the worker relies on (`worker.kombu_seam`).
- No result backend: results live in SQL.
- Acks happen after the commit, by our micro-batching strategy (`worker.strategy`), which is the
  equivalent of `task_acks_late` + `task_reject_on_worker_lost` for batched work: a message is
  acked only once every one of its items is committed, so a killed worker's messages come back.
  Both flags are still set, for anything else that runs through Celery's normal path.
- Redis `visibility_timeout` (default 600 s) far above the worst batch time (well under 1 s;
  a database outage can last longer, and then the redelivered copy is stored idempotently).
- On amqp:// (RabbitMQ): durable quorum queues with a delivery limit and a dead-letter queue,
  and publisher confirms (`textlstm.broker_options.amqp_celery_config`), a prefetch that
  starts at 1 (`prefetch`), none of the Redis transport's options; see
  docs/operations.md "RabbitMQ" for what holds there and what does not yet.
- Queues are consumed in priority order (`queue_order_strategy: priority`); `worker.control`
  adds the `textlstm_info` inspect command that `textlstm-admin status` uses.
- With TEXTLSTM_RETENTION_PURGE_AFTER set, a thread in each process purges old finished jobs,
  one process of the fleet at a time (`worker.retention`).
- Pool `solo`, one consumer per OS process: the strategy runs each micro-batch in the process
  that received its messages, so nothing is pickled between processes and each process owns one
  device; `textlstm-admin worker` starts one such process per core or GPU.
"""

from __future__ import annotations

import ssl
import sys
from typing import Any
from urllib.parse import urlsplit

from celery import Celery, bootsteps

from textlstm.broker_options import (
    AMQP_TRANSPORT_OPTIONS,
    amqp_celery_config,
    is_amqp,
    ssl_context_options,
)
from textlstm.errors import EX_CONFIG, TextlstmError
from textlstm.settings import Settings, get_settings
from textlstm.wire.redis_layout import dead_letter_key


def broker_transport(broker_url: str) -> dict[str, Any]:
    """On Redis and Redis Sentinel, our transport whose pop cannot lose a message
    (`worker.transport`; its Sentinel variant asks the Sentinels for the master, as kombu's
    `sentinel://` transport does, and so follows a failover).

    Naming the transport class stops kombu from reading the URL's scheme, so the one thing
    the scheme decides, TLS for `rediss://`, is said here: certificates are verified against
    the system's trust store unless the URL's `ssl_*` options say otherwise (kombu's own
    default for a bare `rediss://` is not to verify).
    """
    scheme = urlsplit(broker_url).scheme
    if scheme == "sentinel":
        return {"broker_transport": "worker.transport:SentinelTransport"}
    if scheme not in ("redis", "rediss"):
        return {}
    extra: dict[str, Any] = {"broker_transport": "worker.transport:Transport"}
    if scheme == "rediss":
        extra["broker_use_ssl"] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    return extra


def transport_options(settings: Settings) -> dict[str, Any]:
    """Celery's `broker_transport_options` for the worker. On amqp:// only the project's
    AMQP options (publisher confirms, `textlstm.broker_options.AMQP_TRANSPORT_OPTIONS`) and
    the operator's: the others are the Redis transport's (worker/transport.py)."""
    if is_amqp(settings.broker_url):
        return {**AMQP_TRANSPORT_OPTIONS, **settings.broker_transport_options}
    return {
        "visibility_timeout": settings.worker_visibility_timeout_s,
        "unacked_restore_interval": settings.worker_restore_interval_s,
        "unacked_restore_throttle": 1,
        # The lock a worker holds while it sweeps expired messages back (milliseconds of
        # work). kombu's 300 s expiry outlives a Redis restart in the append-only file when
        # Redis stops mid-sweep: no worker could restore anything for five minutes (seen
        # as 18 messages left unacked in the Redis-restart fault test).
        "unacked_mutex_expire": 10,
        # BRPOP lists the queues in the order of --queues, every time (kombu's default
        # rotates them for fairness): high, then normal, then bulk (textlstm.wire.queues).
        "queue_order_strategy": "priority",
        "idle_poll_interval": settings.worker_idle_poll_ms / 1000,
        # Poison-message quarantine and the dead-letter list (worker/transport.py).
        "max_deliveries": settings.worker_max_deliveries,
        "dead_letter_key": dead_letter_key(settings.queue),
        "dead_letter_max": settings.dead_letter_max,
        # TEXTLSTM_BROKER_TRANSPORT_OPTIONS last: the operator's word wins (master_name
        # and sentinel_kwargs for sentinel://; checked in textlstm.broker_options).
        **settings.broker_transport_options,
    }


def prefetch(settings: Settings) -> int:
    """The prefetch each consumer starts with. On Redis the full window: the batcher needs up
    to max_items one-text messages to fill one micro-batch (see worker_prefetch in settings),
    so never fewer. On amqp:// 1: a quorum queue counts a dead worker's return against every
    message it held, so a worker takes messages delivered before one at a time and opens the
    full window once a new one arrives (`worker.strategy.Prefetch`)."""
    if is_amqp(settings.broker_url):
        return 1
    return max(settings.worker_prefetch, settings.worker_batch_max_items)


def celery_config(settings: Settings) -> dict[str, Any]:
    tls = {}
    if settings.broker_use_ssl:  # sentinel:// only (checked in textlstm.settings)
        tls = {"broker_use_ssl": ssl_context_options(settings.broker_use_ssl)}
    return {
        **broker_transport(settings.broker_url),
        **tls,
        "broker_url": settings.broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": transport_options(settings),
        **(
            amqp_celery_config(settings.queue, settings.worker_max_deliveries)
            if is_amqp(settings.broker_url)
            else {}
        ),
        "result_backend": None,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_default_queue": settings.queue,
        "worker_pool": "solo",
        "worker_concurrency": 1,
        # Unacked messages this process may hold (per consumer on amqp://), to start with.
        "worker_prefetch_multiplier": prefetch(settings),
        "worker_send_task_events": False,
    }


class KeepOurTransport(bootsteps.Step):
    """Worker bootstep: a broker URL list (`sentinel://a;sentinel://b`, or Celery's
    `redis://a;redis://b` failover list) makes Celery switch URLs when it reconnects, and
    kombu then takes the transport from the URL's scheme, not from `broker_transport`: after
    the first reconnection the worker would run kombu's BRPOP transport, without the atomic
    pop or the dead-letter list (seen in the Sentinel fault test as acks failing after a
    failover). In the worker process only, the scheme is pointed at our transport."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        from worker import kombu_seam

        ours = worker.app.conf.broker_transport
        scheme = urlsplit(str(worker.app.conf.broker_url or "")).scheme
        if isinstance(ours, str) and ours.startswith("worker.transport:") and scheme:
            kombu_seam.keep_transport_on_switch(scheme, ours)
        super().__init__(worker, **kwargs)


def settings_or_exit() -> Settings:
    """The process's settings; on a settings mistake, its line(s) on stderr and exit EX_CONFIG.

    Celery reads the configuration while parsing its own command line, so an exception here
    would print Celery's and click's frames around a one-line message (~80 lines), once per
    process, restarted forever by the supervisor.
    """
    try:
        return get_settings()
    except TextlstmError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.stderr.flush()
        raise SystemExit(EX_CONFIG) from None


def create_app(settings: Settings | None = None) -> Celery:
    app = Celery("textlstm", set_as_current=False, include=["worker.tasks", "worker.control"])
    app.add_defaults(lambda: celery_config(settings or settings_or_exit()))
    from worker.guards import RefuseUnfitKombu, RefuseUnreachableBroker, RefuseUnsafeContent
    from worker.retention import PeriodicPurge
    from worker.strategy import FlushOnShutdown

    app.steps["consumer"].add(FlushOnShutdown)
    app.steps["worker"].add(RefuseUnfitKombu)
    app.steps["worker"].add(RefuseUnsafeContent)
    app.steps["worker"].add(RefuseUnreachableBroker)
    app.steps["worker"].add(KeepOurTransport)
    app.steps["worker"].add(PeriodicPurge)  # TEXTLSTM_RETENTION_PURGE_AFTER (worker/retention.py)
    return app


app = create_app()
