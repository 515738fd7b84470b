"""Startup guards: refuse to run a worker whose configuration could execute broker input.

`accept_content` decides which serializers kombu will decode. JSON is data; pickle (and YAML's
object tags) run code chosen by whoever can write to the broker. `worker.app` sets JSON only,
but a config module, a plugin or an edit can widen it, and nothing would say so: the worker
would then deserialise a hostile pickle before any of our validation runs. This bootstep
checks the final configuration when the worker is built and stops it with one clear error.
"""

from __future__ import annotations

from typing import Any

from celery import bootsteps
from celery.exceptions import ImproperlyConfigured

SAFE_CONTENT = frozenset({"json", "application/json"})


def unsafe_content(conf: Any) -> list[str]:
    """Content types the configuration accepts beyond JSON (tasks and results alike)."""
    accepted = list(conf.accept_content or []) + list(conf.result_accept_content or [])
    return sorted({str(c) for c in accepted} - SAFE_CONTENT)


class RefuseUnsafeContent(bootsteps.Step):
    """Worker bootstep: raises before the worker consumes anything."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        unsafe = unsafe_content(worker.app.conf)
        if unsafe:
            raise ImproperlyConfigured(
                f"refusing to start: the broker's accept_content allows {', '.join(unsafe)}; "
                "textlstm workers take JSON only (a pickle or YAML message would run code)"
            )
        super().__init__(worker, **kwargs)
