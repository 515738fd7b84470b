"""Cancelled jobs, as the worker sees them: a local copy of the cancelled-job set, re-read at
most every `refresh_s`, and the part of a micro-batch that is not cancelled (pure: no Redis,
no clock of its own; the worker passes the read and the time in).

`textlstm-admin jobs cancel` (`Client.cancel`) first stores every item of the job that has no
row yet as `cancelled` in SQL and only then adds the job id to the Redis set, so a worker that
sees an id there knows the job's items all have their rows already: it acks their messages
without running the model and without writing anything. A worker that has not seen it yet
(the copy is up to `refresh_s` old, or Redis could not be read) classifies the items and
stores nothing new: each item already has its row. The set is an optimisation; SQL decides.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Set
from dataclasses import replace

from textlstm.serving.microbatch import MicroBatch, estimate_tokens

log = logging.getLogger(__name__)


class CancelledJobs:
    """The ids of cancelled jobs, read through `fetch` at most once per `refresh_s`.

    A failed read keeps the last copy (logged once until a read works again) and the next try
    waits `retry_s`: a read that hangs until its timeout (Redis unreachable) must not slow
    every micro-batch. The worker goes on, and SQL still keeps every cancelled item from
    being stored twice.
    """

    def __init__(
        self, fetch: Callable[[], Iterable[str]], *, refresh_s: float, retry_s: float = 5.0
    ) -> None:
        self._fetch = fetch
        self.refresh_s = refresh_s
        self.retry_s = max(retry_s, refresh_s)
        self._wait = refresh_s
        self._ids: frozenset[uuid.UUID] = frozenset()
        self._raw: list[str] = []
        self._read_at: float | None = None
        self._failing = False
        self.reads = 0

    def get(self, now: float) -> frozenset[uuid.UUID]:
        """The cancelled job ids as of at most `refresh_s` before `now` (monotonic seconds)."""
        if self._read_at is not None and now - self._read_at < self._wait:
            return self._ids
        self._read_at = now
        self.reads += 1
        try:
            raw = list(self._fetch())
        except Exception as exc:  # noqa: BLE001 - an optimisation: keep going without it
            if not self._failing:
                log.warning("could not read the cancelled jobs (retrying): %s", exc)
            self._failing = True
            self._wait = self.retry_s
            return self._ids
        self._wait = self.refresh_s
        if self._failing:
            log.info("reading the cancelled jobs again")
        self._failing = False
        if raw != self._raw:  # parsing 1,000 ids takes ~3 ms; comparing them ~10 µs
            self._raw, self._ids = raw, frozenset(_ids(raw))
        return self._ids


def _ids(raw: Iterable[str]) -> Iterable[uuid.UUID]:
    for value in raw:
        try:
            yield uuid.UUID(value)
        except (ValueError, TypeError, AttributeError):
            continue  # not ours: the set only ever holds job ids the cancel checked


def without_cancelled(
    batch: MicroBatch, cancelled: Set[uuid.UUID]
) -> tuple[MicroBatch | None, int]:
    """The batch without the items of cancelled jobs (None when nothing is left), and how many
    items were taken out. The caller still completes (and acks) the whole original batch."""
    if not cancelled:
        return batch, 0
    keep = tuple(s for s in batch.slices if s.entry.message.job_id not in cancelled)
    if len(keep) == len(batch.slices):
        return batch, 0
    dropped = len(batch) - sum(len(s.items) for s in keep)
    if not keep:
        return None, dropped
    tokens = sum(estimate_tokens(i.text) for s in keep for i in s.items)
    return replace(batch, slices=keep, tokens=tokens), dropped
