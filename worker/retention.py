"""The worker fleet's periodic purge (TEXTLSTM_RETENTION_PURGE_AFTER; docs/operations.md).

A worker bootstep starts one daemon thread per worker process when the setting is on. The
thread wakes about once per TEXTLSTM_RETENTION_PURGE_INTERVAL_S and calls
`textlstm.ops.retention.purge_if_due`, which purges only if this process takes the fleet's
Redis lease, so the fleet purges about once per interval however many processes it has.

Why a thread in the worker rather than Celery beat: beat is a separate process that must run
exactly once per deployment, and a purge task would have to pass through the classify queue's
micro-batching strategy. The purge is SQL waiting on the database (it holds the GIL very
little), in short transactions that never lock a row a worker writes, so a micro-batch in the
same process is not slowed noticeably. Off by default: nothing is deleted unless asked.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import Any

from celery import bootsteps

log = logging.getLogger("textlstm.retention")


class PeriodicPurge(bootsteps.StartStopStep):
    """Worker bootstep: the purge thread's start and stop (a warm shutdown stops it after the
    transaction in progress)."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        super().__init__(worker, **kwargs)

    def start(self, worker: Any) -> None:
        from worker.app import settings_or_exit

        settings = settings_or_exit()
        if settings.retention_purge_after is None:
            return
        self._thread = threading.Thread(
            target=self._run, args=(settings,), name="textlstm-retention", daemon=True
        )
        self._thread.start()

    def stop(self, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self, settings: Any) -> None:
        from textlstm.ops.retention import purge_if_due
        from textlstm.store.db import make_engine, make_session_factory

        engine = make_engine(
            settings.database_url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms
        )
        factory = make_session_factory(engine)
        interval = settings.retention_purge_interval_s
        log.info(
            "retention: jobs finished more than %s ago are purged, about every %gs",
            settings.retention_purge_after,
            interval,
        )
        # Processes started together try at spread-out times, then about once an interval.
        wait = random.uniform(0.1, 1.0) * min(interval, 60.0)
        try:
            while not self._stop.wait(wait):
                try:
                    purge_if_due(settings, session_factory=factory, should_stop=self._stop.is_set)
                except Exception as exc:  # the database or Redis is down: try again next time
                    # One line, not a traceback per interval for as long as an outage lasts.
                    log.warning(
                        "retention: purge failed (%s: %s); trying again in about %gs",
                        type(exc).__name__,
                        str(exc).splitlines()[0] if str(exc) else "",
                        interval,
                    )
                wait = interval * random.uniform(0.5, 1.0)
        finally:
            engine.dispose()
