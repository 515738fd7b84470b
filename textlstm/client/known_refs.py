"""Model references a producer recently found registered, so that submitting many jobs does
not look the same reference up in SQL for each one (two SELECTs: about a sixth of a one-text
gateway request's CPU, docs/gateway.md "Measured").

Only the *check* is remembered, never its answer: the job row keeps the reference as
submitted and the worker resolves it when it runs the job, so a moved alias takes effect at
once whatever this holds. Model versions and aliases are never deleted, so a reference found
once stays valid; the short expiry only bounds how long a database replaced underneath a
running producer (restored, recreated) goes unnoticed. A reference not found is never
remembered: a model registered a moment ago is accepted at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: Seconds a reference found registered is trusted without asking SQL again.
KNOWN_REF_TTL_S = 10.0
#: Most references remembered; past it the oldest half is forgotten (a producer uses a few).
KNOWN_REFS_MAX = 1024


class KnownRefs:
    """A small thread-safe set of model references with an expiry (the gateway submits from
    Starlette's thread pool)."""

    def __init__(
        self,
        ttl_s: float = KNOWN_REF_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        max_refs: int = KNOWN_REFS_MAX,
    ) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._max = max_refs
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def __contains__(self, ref: object) -> bool:
        """True when `ref` was found registered less than ttl_s ago."""
        until = self._until.get(ref) if isinstance(ref, str) else None
        return until is not None and self._clock() < until

    def add(self, ref: str) -> None:
        """Remember that `ref` resolved just now."""
        with self._lock:
            if len(self._until) >= self._max:
                for old in list(self._until)[: self._max // 2]:  # insertion order: oldest first
                    del self._until[old]
            self._until.pop(ref, None)
            self._until[ref] = self._clock() + self._ttl_s
