"""Producer backpressure: how many of a job's messages may be sent now, given the queue depth.

A runaway producer must not fill Redis's memory. Before sending, the producer reads how many
messages wait in the target queue (`LLEN`) and, over `TEXTLSTM_QUEUE_MAX_PENDING`:

- `refuse`: raises QueueFullError before sending anything (all or nothing for the job);
- `block`: sends as much as fits, waits for workers to make room (polling), and raises
  QueueFullError once `queue_full_timeout_s` has passed. What was sent stays queued; sending
  the same job id again completes it safely (items are stored once).

The limit is soft: producers racing each other can overshoot it by one chunk each. The depth
reader, clock and sleep are injected, so the decisions are tested without Redis or waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from textlstm.errors import QueueFullError


@dataclass
class Gate:
    """Admission for one job's messages on one queue."""

    queue: str
    limit: int  # 0 = unlimited
    policy: str  # "refuse" | "block"
    timeout_s: float
    depth: Callable[[], int]
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    poll_s: float = 0.25

    def admit(self, remaining: int, *, sent: int, total: int) -> int:
        """How many of the `remaining` messages may be sent now (≥ 1); raises QueueFullError."""
        if self.limit <= 0:
            return remaining
        if self.policy == "refuse":
            return self._refuse(remaining, total)
        deadline = self.clock() + self.timeout_s
        while True:
            pending = self.depth()
            room = self.limit - pending
            if room > 0:
                return min(room, remaining)
            if self.clock() >= deadline:
                raise QueueFullError(
                    f"queue {self.queue!r} still holds {pending} pending messages (limit "
                    f"{self.limit}, TEXTLSTM_QUEUE_MAX_PENDING) after waiting "
                    f"{self.timeout_s:g}s; sent {sent} of {total} message(s) of this job. "
                    "Send the same job id again later to complete it (items are stored once)."
                )
            self.sleep(self.poll_s)

    def _refuse(self, remaining: int, total: int) -> int:
        pending = self.depth()
        if total > self.limit:
            raise QueueFullError(
                f"job needs {total} messages, more than queue {self.queue!r} may hold "
                f"({self.limit}, TEXTLSTM_QUEUE_MAX_PENDING): split the job, raise the limit "
                "or use TEXTLSTM_QUEUE_FULL_POLICY=block"
            )
        if pending + remaining > self.limit:
            raise QueueFullError(
                f"queue {self.queue!r} holds {pending} pending messages; {remaining} more would "
                f"pass the limit of {self.limit} (TEXTLSTM_QUEUE_MAX_PENDING). Nothing was sent: "
                "retry later, add workers, or use TEXTLSTM_QUEUE_FULL_POLICY=block"
            )
        return remaining
