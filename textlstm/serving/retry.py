"""Retry with capped exponential backoff while the database is unreachable.

The worker never acks a message whose rows are not committed, so while the database is down it
waits here (not consuming), and a shutdown request ends the wait without acking: the broker
then hands the messages to the next worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import exc as sa_exc

from textlstm.errors import StoreError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Errors that mean "the database is (briefly) not there": connection refused or dropped,
#: server shutting down, SQLite locked, pool exhausted. Integrity or programming errors are bugs
#: and are not retried.
RETRYABLE: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
    StoreError,
)


class ShutdownRequested(Exception):
    """Raised instead of retrying once the process was asked to stop."""


@dataclass(frozen=True)
class RetryPolicy:
    initial_s: float = 0.5
    max_s: float = 10.0
    should_stop: Callable[[], bool] = lambda: False
    sleep: Callable[[float], None] = time.sleep

    def delays(self) -> Callable[[int], float]:
        return lambda attempt: min(self.max_s, self.initial_s * 2 ** (attempt - 1))


def retrying(fn: Callable[[], T], *, policy: RetryPolicy, what: str) -> tuple[T, int]:
    """Call `fn` until it succeeds; return (result, attempts). Retries only RETRYABLE errors."""
    attempt = 0
    delay = policy.delays()
    while True:
        attempt += 1
        try:
            return fn(), attempt
        except RETRYABLE as exc:
            if policy.should_stop():
                raise ShutdownRequested(f"{what}: stopping while the database fails") from exc
            wait = delay(attempt)
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
            log.warning(
                "%s failed (attempt %d): %s; retrying in %.1fs", what, attempt, reason, wait
            )
            # Sleep in short steps so a shutdown request is noticed quickly.
            end = time.monotonic() + wait
            while (left := end - time.monotonic()) > 0:
                if policy.should_stop():
                    raise ShutdownRequested(f"{what}: stopping while the database fails") from exc
                policy.sleep(min(0.2, left))
