"""The one Celery app of the client side: what producers publish through and `status` asks with.

`Client`, `Producer`, `textlstm-admin jobs requeue` (`textlstm.ops.recovery`) and
`textlstm-admin status` (`textlstm.ops.fleet`) all talk to the broker through `client_app`.
It is not the worker's app (`worker/app.py`, which textlstm never imports): it registers no
task, since messages are sent by task *name*, and has no result backend (results live in SQL).

- JSON only (`task_serializer`, `accept_content`): nothing the client sends or accepts (the
  `textlstm_info` replies) is ever pickled.
- `set_as_current=False`: an application that has its own Celery app keeps it as the current
  one; ours never becomes the default of `@shared_task` or `current_app`.
- No connection at start-up, and no connection retried a hundred times
  (`broker_connection_retry_on_startup`, `broker_connection_max_retries`): every call that
  publishes says how often it retries (`textlstm.client.publisher`), so an outage is one
  BrokerError within about a second, not a hang.

One app per broker URL (and transport options) and process, built once and kept: building one
costs about a millisecond (configuration, the AMQP helper, the producer pool's lookup), which
`Client.submit` used to pay on every call. Sharing it is safe: its configuration is only read
after it is built, and the broker connections it sends on come from kombu's process-wide
producer pool, keyed by the connection's parameters, which every app on the same broker
shared before as well; each publishing thread acquires its own producer from that pool
(`app.producer_or_acquire()`), up to `broker_pool_limit` (10) at once. The app is warmed up
under a lock, so threads racing to publish first get the same pool. The process id is part of
the key: a forked child builds its own app rather than reuse its parent's.
"""

from __future__ import annotations

import json
import os
import threading
from typing import TYPE_CHECKING, Any

from textlstm.settings import Settings

if TYPE_CHECKING:  # Celery is imported when the first app is built: `import textlstm.client`
    from celery import Celery  # stays light for code that only reads results.

#: The app's main name: it appears in Celery's own log lines and reprs, never on the wire.
APP_NAME = "textlstm-client"

_apps: dict[tuple[int, str, str], Celery] = {}
_lock = threading.Lock()


def client_config() -> dict[str, object]:
    """The client app's configuration besides the broker (the module docstring says why)."""
    return {
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_backend": None,
        "task_ignore_result": True,
        "broker_connection_retry_on_startup": False,
        "broker_connection_max_retries": 1,
    }


def client_app(settings: Settings) -> Celery:
    """The process's client-side Celery app for `settings.broker_url`, built on first use.

    Never close it (`app.close()`): it is shared by every producer on that broker in this
    process. Only the broker URL shapes it, so two Settings on one broker share one app.
    """
    options, tls = settings.broker_transport_options, settings.broker_use_ssl
    key = (os.getpid(), settings.broker_url, json.dumps([options, tls], sort_keys=True))
    app = _apps.get(key)
    if app is not None:
        return app
    with _lock:
        app = _apps.get(key)
        if app is None:
            app = _build(settings.broker_url, options, tls)
            _apps[key] = app
    return app


def _build(broker_url: str, transport_options: dict[str, Any], tls: dict[str, Any]) -> Celery:
    from celery import Celery

    from textlstm.broker_options import (
        AMQP_TRANSPORT_OPTIONS,
        amqp_celery_config,
        is_amqp,
        ssl_context_options,
    )

    app = Celery(APP_NAME, broker=broker_url, set_as_current=False)
    app.conf.update(client_config())
    # TEXTLSTM_BROKER_TRANSPORT_OPTIONS and TEXTLSTM_BROKER_USE_SSL, as the workers get them:
    # master_name, the Sentinels' password and TLS for sentinel://, so producers and `status`
    # find the same master the same way.
    app.conf.broker_transport_options = dict(transport_options)
    if is_amqp(broker_url):
        # RabbitMQ: publisher confirms (a publish returns only once the broker acked it). The
        # publisher names each queue as a kombu Queue with the workers' arguments
        # (`textlstm.broker_options.amqp_queue`); a queue declared twice with different
        # arguments is a channel error.
        app.conf.broker_transport_options = {**AMQP_TRANSPORT_OPTIONS, **transport_options}
        app.conf.update(amqp_celery_config(None))
    if tls:
        app.conf.broker_use_ssl = ssl_context_options(tls)
    # Finalize the configuration and look the producer pool up now, once, rather than from
    # whichever threads publish first (no connection is opened here).
    app.producer_pool  # noqa: B018 - evaluated for its side effect
    return app
