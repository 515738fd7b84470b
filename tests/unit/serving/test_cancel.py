"""The worker's view of cancelled jobs, pure: the cached set (read at most once per interval,
a failed read keeps the last copy) and a micro-batch without the items of cancelled jobs."""

from __future__ import annotations

import logging
import uuid

import pytest

from tests.fixtures.serving import batch_of, message
from textlstm.serving.cancel import CancelledJobs, without_cancelled
from textlstm.serving.microbatch import Batcher


def test_the_set_is_read_at_most_once_per_interval() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    served = [[str(a)], [str(a), str(b), "not-a-uuid"]]
    cache = CancelledJobs(lambda: served[min(cache.reads - 1, 1)], refresh_s=0.5)
    assert cache.get(10.0) == {a}
    assert cache.get(10.4) == {a} and cache.reads == 1  # cached: no read
    assert cache.get(10.5) == {a, b} and cache.reads == 2  # stale: read again, junk ignored
    every = CancelledJobs(lambda: [str(a)], refresh_s=0)
    every.get(1.0), every.get(1.0)
    assert every.reads == 2  # 0: before every micro-batch


def test_a_failed_read_keeps_the_last_copy_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    a = uuid.uuid4()
    fail = [False, True, True, False, False]

    def fetch() -> list[str]:
        if fail[cache.reads - 1]:
            raise ConnectionError("Redis went away")
        return [str(a)]

    cache = CancelledJobs(fetch, refresh_s=1, retry_s=5)
    with caplog.at_level(logging.INFO, logger="textlstm.serving.cancel"):
        assert [cache.get(t) for t in (0, 1, 2, 6, 11, 12)] == [{a}] * 6
    # read at 0 (ok), 1 (fails), then not before 6 (fails), 11 (works), back to every second
    assert cache.reads == 5
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Redis went away" in warnings[0].getMessage()
    assert "again" in caplog.records[-1].getMessage()


def test_without_cancelled_keeps_the_other_jobs_items() -> None:
    gone, kept = uuid.uuid4(), uuid.uuid4()
    batch = batch_of(
        message(["a b", "c"], job=gone),
        message(["d e f"], job=kept),
        message(["g"], job=gone, start=2, total=3),
    )
    assert without_cancelled(batch, set()) == (batch, 0)
    assert without_cancelled(batch, {uuid.uuid4()}) == (batch, 0)
    live, dropped = without_cancelled(batch, {gone})
    assert dropped == 3 and live is not None
    assert [(s.entry.message.job_id, len(s.items)) for s in live.slices] == [(kept, 1)]
    assert live.model_ref == batch.model_ref and live.tokens == 3 and len(live) == 1
    assert without_cancelled(batch, {gone, kept}) == (None, 4)


def test_completing_the_whole_batch_acks_the_skipped_messages_too() -> None:
    """The worker runs the live part and completes the original batch: every message of a
    cancelled job is complete (acked) without having been run."""
    gone, kept = uuid.uuid4(), uuid.uuid4()
    b = Batcher(max_items=100, max_tokens=10**6, max_wait_s=0.0)
    b.add(message(["a"], job=gone), "h-gone", 0.0)
    b.add(message(["b"], job=kept), "h-kept", 0.0)
    whole = b.take(0.0, force=True)
    assert whole is not None
    live, _ = without_cancelled(whole, {gone})
    assert live is not None and len(live) == 1
    assert b.complete(whole) == ["h-gone", "h-kept"] and len(b) == 0
