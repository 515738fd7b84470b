"""Acks batched after commit on AMQP: one `basic.ack` with `multiple=True` per contiguous run.

AMQP delivery tags are numbered 1, 2, 3, … per channel, over every consumer on it (the worker's
three priority queues share one). `basic.ack(tag, multiple=True)` acks *every* outstanding
delivery of the channel up to `tag`, so it is safe for a committed batch only when each
outstanding tag up to `tag` belongs to that batch: a message still held by the batcher
(uncommitted) below it would be acked too, and lost if the worker then died.

`Outstanding` is the worker's own record of what it received on each channel and has not
acked or rejected yet; `split` (pure) finds, for a committed batch, the highest tag `n` such
that every outstanding tag up to `n` is the batch's. The batch's tags up to `n` then go in one
`basic.ack(n, multiple=True)` and the rest, above a gap (a message of another priority still
held, say), one by one. Messages that Celery settles itself (an unknown task, an undecodable
body) are acked or rejected synchronously when they arrive, so they are never outstanding when
a batch commits.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable


def split(batch: Collection[int], outstanding: Iterable[int]) -> tuple[int | None, list[int]]:
    """(`n`, the rest): `n` is the highest tag such that every outstanding tag up to it is in
    `batch` (None when the lowest outstanding tag is not, or the run would hold one tag: a
    plain ack then); the rest are the batch's tags above `n`, ascending. `outstanding` must
    include the batch's tags."""
    n: int | None = None
    run = 0
    for tag in sorted(outstanding):
        if tag not in batch:
            break
        n, run = tag, run + 1
    if run < 2:
        n = None
    rest = sorted(t for t in batch if n is None or t > n)
    return n, rest


class Outstanding:
    """Delivery tags received and not yet settled, per channel (keyed by the channel object's
    id: a reconnection makes a new channel, whose tags start again at 1)."""

    def __init__(self) -> None:
        self._unsettled: dict[int, set[int]] = {}

    def received(self, channel: object, tag: int) -> None:
        self._unsettled.setdefault(id(channel), set()).add(tag)

    def settled(self, channel: object, tags: Iterable[int]) -> None:
        held = self._unsettled.get(id(channel))
        if held is not None:
            held.difference_update(tags)

    def of(self, channel: object) -> set[int]:
        return self._unsettled.get(id(channel), set())
