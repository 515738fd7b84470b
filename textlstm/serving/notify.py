"""After a micro-batch's commit: publish the final event of each job it finished, and wake the
webhook sender (textlstm/serving/webhooks.py) when some of them have a webhook.

The events come from the transaction itself (store/events.py: the write whose token lands in
`jobs.finished_by`), so each job's event is published by exactly one worker, once. Publishing is
one pipelined round trip of PUBLISH commands to Redis, on the channel
`textlstm.wire.events.finished_channel` names; `client.wait` subscribes to it. Failures are
logged, never raised: a waiter that misses an event finds the job final in SQL on its next
check (its polling fallback).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from textlstm.store.events import Finished
from textlstm.wire.events import publish_finished

log = logging.getLogger(__name__)


class Notifier:
    """Publishes final events on Redis (none when `redis` is None: a broker other than Redis)
    and hands webhooks to the sender."""

    def __init__(self, redis: Any, queue: str, sender: Any | None = None) -> None:
        self.redis = redis
        self.queue = queue
        self.sender = sender
        self.published = 0

    def finished(self, events: Sequence[Finished]) -> None:
        if not events:
            return
        if self.redis is not None:  # None: not a Redis broker, no events, waiters poll SQL
            self._publish(events)
        if self.sender is not None and any(e.webhook for e in events):
            self.sender.nudge()

    def _publish(self, events: Sequence[Finished]) -> None:
        try:
            self.published += publish_finished(
                self.redis, self.queue, ((e.job_id, e.status) for e in events)
            )
        except Exception as exc:  # noqa: BLE001 - waiters fall back to SQL; never stop the work
            log.warning("could not publish %d final event(s): %s", len(events), exc)

    def close(self) -> None:
        if self.sender is not None:
            self.sender.stop()
