"""Dynamic micro-batching, as pure bookkeeping (no broker, no clock, no torch).

Messages arrive one by one; each carries 1..256 items of one job. The batcher gathers items of
the same model reference from many messages into one micro-batch, bounded by `max_items` and an
estimated `max_tokens`, and flushes a partial batch once its oldest item has waited `max_wait_s`
(the knobs of Triton's dynamic batcher / TorchServe's batch_size + max_batch_delay). A big
message is split across micro-batches. A partial batch is also flushed as soon as no message
has arrived for `idle_s` (the queue went quiet): at low load an item waits only that long, and
at saturation, where messages arrive every ~1–2 ms, the batch keeps filling to its maximum
instead of being cut by `max_wait_s` (which then only bounds the worst case).

A message is *complete* — and only then may the caller ack it — once every one of its items
belongs to a committed batch: acking after the commit is what makes a SIGKILL lose nothing.

The caller owns time: every method that needs "now" takes it as an argument, so tests drive the
batcher with plain numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

from textlstm.wire.messages import ClassifyMessage, Item

#: Within a model's group, high-priority items are cut into a batch before normal and bulk ones
#: (the broker already hands them over first; this covers what the worker had buffered).
PRIORITY_RANK = {"high": 0, "normal": 1, "bulk": 2}


def estimate_tokens(text: str, cap: int = 256) -> int:
    """Roughly the tokenizer's count, capped like truncation, ≥ 1: words (spaces + 1) plus
    commas and full stops. Within 12% of the real count on the shared datasets' test texts
    (AG News 41 vs 46, TREC 7.6 vs 7.8, SST-5 21.3 vs 20.7, emotion equal) at under 1 µs a
    text; a regex over every word took 8.7 µs, 4.6% of a saturated worker's CPU (py-spy)."""
    return max(1, min(cap, text.count(" ") + 1 + text.count(",") + text.count(".")))


@dataclass(eq=False)
class Entry:
    """A received message: its items not yet batched start at `cursor`; `open` counts items
    not yet committed (batched or not). `handle` is the caller's (e.g. the ack callback)."""

    message: ClassifyMessage
    handle: Any
    received_at: float
    cursor: int = 0
    open: int = field(init=False)

    def __post_init__(self) -> None:
        self.open = len(self.message.items)

    @property
    def unbatched(self) -> int:
        return len(self.message.items) - self.cursor


@dataclass(frozen=True)
class Slice:
    """Consecutive items of one message that belong to one micro-batch."""

    entry: Entry
    items: tuple[Item, ...]


@dataclass(frozen=True)
class MicroBatch:
    """Items for one forward pass; all share `model_ref`."""

    model_ref: str
    slices: tuple[Slice, ...]
    tokens: int

    def __len__(self) -> int:
        return sum(len(s.items) for s in self.slices)

    def pairs(self) -> Iterator[tuple[Entry, Item]]:
        for s in self.slices:
            for item in s.items:
                yield s.entry, item

    @property
    def messages(self) -> int:
        return len({id(s.entry) for s in self.slices})


class Batcher:
    """Buffers entries and forms micro-batches; see the module docstring."""

    def __init__(
        self,
        *,
        max_items: int,
        max_tokens: int,
        max_wait_s: float,
        idle_s: float | None = None,
        cost: Callable[[str], int] = estimate_tokens,
    ) -> None:
        if max_items < 1 or max_tokens < 1 or max_wait_s < 0:
            raise ValueError("max_items and max_tokens must be ≥ 1 and max_wait_s ≥ 0")
        self.max_items = max_items
        self.max_tokens = max_tokens
        self.max_wait_s = max_wait_s
        self.idle_s = max_wait_s if idle_s is None else min(idle_s, max_wait_s)
        self._last_arrival = float("-inf")
        self._cost = cost
        self._entries: list[Entry] = []  # arrival order
        self._costs: dict[int, list[int]] = {}  # id(entry) -> token cost per item
        self._pending: dict[str, tuple[int, int]] = {}  # ref -> unbatched (items, tokens)

    def __len__(self) -> int:
        """Messages held (received, not yet complete)."""
        return len(self._entries)

    @property
    def unbatched_items(self) -> int:
        return sum(n for n, _ in self._pending.values())

    def add(self, message: ClassifyMessage, handle: Hashable | Any, now: float) -> Entry:
        entry = Entry(message, handle, now)
        self._last_arrival = max(self._last_arrival, now)
        self._entries.append(entry)
        costs = [self._cost(i.text) for i in message.items]
        self._costs[id(entry)] = costs
        self._count(message.model, len(costs), sum(costs))
        return entry

    def _count(self, ref: str, items: int, tokens: int) -> None:
        # Running totals per model reference: O(1) per message on the hot path.
        n, t = self._pending.get(ref, (0, 0))
        if n + items:
            self._pending[ref] = (n + items, t + tokens)
        else:
            self._pending.pop(ref, None)

    def _oldest_unbatched(self) -> Entry | None:
        # Arrival order, and batches are cut first-in first-out: the scan stops early.
        return next((e for e in self._entries if e.unbatched), None)

    def deadline(self) -> float | None:
        """When the next partial batch is due: the queue idle for idle_s, or the oldest item
        waited max_wait_s, whichever is first (None when nothing waits)."""
        oldest = self._oldest_unbatched()
        if oldest is None:
            return None
        return min(oldest.received_at + self.max_wait_s, self._last_arrival + self.idle_s)

    def _pick(self, now: float, force: bool) -> str | None:
        """The model reference whose items form the next batch, or None if none is due."""
        for ref, (items, tokens) in self._pending.items():
            if items >= self.max_items or tokens >= self.max_tokens:
                return ref
        oldest = self._oldest_unbatched()
        if oldest is None:
            return None
        if (
            force
            or now >= self._last_arrival + self.idle_s
            or now >= oldest.received_at + self.max_wait_s
        ):
            if oldest.message.priority != "high":
                # A high-priority item waiting behind it goes first (its model's group).
                urgent = next(
                    (e for e in self._entries if e.unbatched and e.message.priority == "high"),
                    oldest,
                )
                return urgent.message.model
            return oldest.message.model
        return None

    def ready(self, now: float) -> bool:
        """True when some group is full or due (queue idle, or waited max_wait_s)."""
        return self._pick(now, False) is not None

    def take(self, now: float, *, force: bool = False) -> MicroBatch | None:
        """The next micro-batch that is full or due (any non-empty one when `force`), or None.

        A full group goes first; otherwise the group of the oldest waiting item, so no model
        reference starves another.
        """
        ref = self._pick(now, force)
        if ref is None:
            return None
        entries = [e for e in self._entries if e.unbatched and e.message.model == ref]
        # Higher priority first, arrival order within a priority (sorted() is stable).
        entries.sort(key=lambda e: PRIORITY_RANK.get(e.message.priority, 1))
        return self._cut(ref, entries)

    def _cut(self, ref: str, entries: list[Entry]) -> MicroBatch:
        slices: list[Slice] = []
        items = tokens = 0
        for e in entries:
            costs = self._costs[id(e)]
            start = e.cursor
            while e.cursor < len(costs):
                c = costs[e.cursor]
                # Always take at least one item, even one above max_tokens on its own.
                if items and (items + 1 > self.max_items or tokens + c > self.max_tokens):
                    break
                items += 1
                tokens += c
                e.cursor += 1
            if e.cursor > start:
                slices.append(Slice(e, e.message.items[start : e.cursor]))
                self._count(ref, -(e.cursor - start), -sum(costs[start : e.cursor]))
            if items >= self.max_items or e.cursor < len(costs):
                break
        return MicroBatch(ref, tuple(slices), tokens)

    def complete(self, batch: MicroBatch) -> list[Any]:
        """Mark a batch committed; return the handles of messages now fully committed, in
        arrival order, and forget them."""
        for s in batch.slices:
            s.entry.open -= len(s.items)
        done = [e for e in self._entries if e.open <= 0]
        if done:
            self._entries = [e for e in self._entries if e.open > 0]
            for e in done:
                del self._costs[id(e)]
        return [e.handle for e in done]

    def drop_all(self) -> list[Any]:
        """Forget everything (shutdown without commit); return the handles (left unacked, the
        broker redelivers them)."""
        handles = [e.handle for e in self._entries]
        self._entries.clear()
        self._costs.clear()
        self._pending.clear()
        return handles
