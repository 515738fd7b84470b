"""Waiting for a condition with a deadline, and saying what was awaited when it never came."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(cond: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll `cond` until it returns something truthy and return that; AssertionError naming
    `what` after `timeout` seconds (the harness is used from tests, where that is a failure)."""
    deadline = time.monotonic() + timeout
    while True:
        if value := cond():
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
