"""Startup guards: refuse to run a worker whose configuration could execute broker input, or
whose kombu or Celery lacks a name the worker relies on.

`accept_content` decides which serializers kombu will decode. JSON is data; pickle (and YAML's
object tags) run code chosen by whoever can write to the broker. `worker.app` sets JSON only,
but a config module, a plugin or an edit can widen it, and nothing would say so: the worker
would then deserialise a hostile pickle before any of our validation runs. `RefuseUnsafeContent`
checks the final configuration when the worker is built and stops it with one line.

The transport and the batching strategy override and call private kombu and Celery names
(`worker.kombu_seam` lists them). On another kombu they would fail mid-delivery, or worse, keep
running with the pop's bookkeeping half done. `RefuseUnfitKombu` checks every one of them when
the worker is built and stops the process with one line.

Both exit with status `os.EX_CONFIG` (78), which `textlstm-admin worker` takes as final rather
than as a crash to restart: the fix is a configuration or a package version, not a restart.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from celery import bootsteps

SAFE_CONTENT = frozenset({"json", "application/json"})


def unsafe_content(conf: Any) -> list[str]:
    """Content types the configuration accepts beyond JSON (tasks and results alike)."""
    accepted = list(conf.accept_content or []) + list(conf.result_accept_content or [])
    return sorted({str(c) for c in accepted} - SAFE_CONTENT)


def refuse(line: str) -> None:
    """Stop the worker process with `line` on stderr and no traceback."""
    # The real stderr: Celery may already have pointed sys.stderr at its logger.
    print(line, file=sys.__stderr__ or sys.stderr, flush=True)
    raise SystemExit(os.EX_CONFIG)


class RefuseUnsafeContent(bootsteps.Step):
    """Worker bootstep: exits before the worker consumes anything if broker input could be
    decoded by anything but JSON."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        unsafe = unsafe_content(worker.app.conf)
        if unsafe:
            refuse(
                f"textlstm worker: refusing to start: the broker's accept_content allows "
                f"{', '.join(unsafe)}; textlstm workers take JSON only (a pickle or YAML message "
                "would run code)"
            )
        super().__init__(worker, **kwargs)


class RefuseUnfitKombu(bootsteps.Step):
    """Worker bootstep: exits before the worker consumes if `worker.kombu_seam.check` finds a
    name or signature missing; the line says which package version the worker needs."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        from worker import kombu_seam

        problems = kombu_seam.check(*kombu_seam.installed())
        if problems:
            refuse(kombu_seam.refusal(problems))
        super().__init__(worker, **kwargs)


def amqp_queues_of(url: str) -> list[Any]:
    """On amqp://, every queue of the worker's `TEXTLSTM_QUEUE` with its arguments, the
    dead-letter queue included (Celery declares only the ones it consumes): declared here, so
    that queues an older version declared differently stop the worker with one line rather
    than with PRECONDITION_FAILED inside Celery's consumer, restarted for ever."""
    from textlstm.broker_options import amqp_topology, is_amqp
    from textlstm.settings import get_settings

    if not is_amqp(url):
        return []
    settings = get_settings()
    return amqp_topology(settings.queue, settings.worker_max_deliveries)


class RefuseUnreachableBroker(bootsteps.Step):
    """Worker bootstep: exits with one line before consuming when, on a `sentinel://` broker,
    no Sentinel answers or none knows `master_name`, or, on amqp://, RabbitMQ refuses the
    login or the vhost or does not answer, or one of its queues exists with other arguments
    (a hand-started `celery` worker would otherwise retry the connection for ever, logging
    kombu's error each time). A failover in progress
    passes: the Sentinels answer while they promote a replica."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        from textlstm.broker_options import probe_broker
        from textlstm.settings import mask_url

        conf = worker.app.conf
        url = str(conf.broker_url or "")
        if url:
            try:
                probe_broker(url, conf.broker_transport_options or {}, queues=amqp_queues_of(url),
                             create=True)  # fmt: skip
            except ConnectionError as exc:
                refuse(f"textlstm worker: broker {mask_url(url)}: {exc}")
        super().__init__(worker, **kwargs)
