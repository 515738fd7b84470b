"""The micro-batcher as pure bookkeeping: limits, waits, splitting, acks only when complete."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textlstm.serving.microbatch import Batcher, estimate_tokens
from textlstm.wire.messages import ClassifyMessage, Item


def msg(
    n: int,
    *,
    start: int = 0,
    total: int = 1000,
    model: str = "m",
    words: int = 3,
    job: uuid.UUID | None = None,
) -> ClassifyMessage:
    items = tuple(Item(start + i, " ".join(["w"] * words)) for i in range(n))
    return ClassifyMessage(job or uuid.uuid4(), model, total, items)


def test_estimate_tokens_counts_words_and_punctuation_and_caps() -> None:
    assert estimate_tokens("hello, world. again") == 5
    assert estimate_tokens("") == 1
    assert estimate_tokens("a " * 1000, cap=256) == 256


def test_many_small_messages_fill_one_batch() -> None:
    b = Batcher(max_items=4, max_tokens=10_000, max_wait_s=1.0)
    for i in range(3):
        b.add(msg(1, start=i), f"h{i}", now=0.0)
    assert not b.ready(0.1) and b.take(0.1) is None
    b.add(msg(1, start=3), "h3", now=0.2)
    assert b.ready(0.2)
    batch = b.take(0.2)
    assert batch is not None and len(batch) == 4 and batch.messages == 4
    assert b.complete(batch) == ["h0", "h1", "h2", "h3"]
    assert len(b) == 0


def test_partial_batch_flushes_after_max_wait() -> None:
    b = Batcher(max_items=128, max_tokens=10_000, max_wait_s=0.05)
    b.add(msg(2), "h", now=10.0)
    assert b.deadline() == 10.05
    assert b.take(10.04) is None
    batch = b.take(10.05)
    assert batch is not None and len(batch) == 2


def test_partial_batch_flushes_when_the_queue_goes_quiet() -> None:
    b = Batcher(max_items=128, max_tokens=10_000, max_wait_s=0.5, idle_s=0.01)
    for i in range(5):
        b.add(msg(1, start=i), i, now=i * 0.002)  # a burst, one message every 2 ms
    assert b.take(0.0085) is None  # still arriving
    assert b.deadline() == pytest.approx(0.018)
    batch = b.take(0.019)
    assert batch is not None and len(batch) == 5


def test_a_steady_stream_fills_the_batch_until_max_wait() -> None:
    b = Batcher(max_items=1000, max_tokens=10**6, max_wait_s=0.5, idle_s=0.01)
    t = 0.0
    while b.take(t) is None:
        b.add(msg(1), None, now=t)
        t += 0.002
    assert t == pytest.approx(0.502, abs=0.003)


def test_big_message_is_split_and_acked_only_when_all_parts_commit() -> None:
    b = Batcher(max_items=100, max_tokens=10_000, max_wait_s=0.0)
    b.add(msg(256), "big", now=0.0)
    parts = [b.take(0.0) for _ in range(3)]
    assert [len(p) for p in parts if p] == [100, 100, 56]
    assert b.take(0.0) is None
    assert b.complete(parts[0]) == [] and b.complete(parts[1]) == []
    assert b.complete(parts[2]) == ["big"]


def test_token_limit_bounds_a_batch_but_never_starves_a_long_text() -> None:
    b = Batcher(max_items=100, max_tokens=10, max_wait_s=0.0)
    b.add(msg(5, words=4), "a", now=0.0)  # 4 tokens each
    first = b.take(0.0)
    assert first is not None and len(first) == 2 and first.tokens == 8
    b2 = Batcher(max_items=100, max_tokens=10, max_wait_s=0.0)
    b2.add(msg(1, words=50), "long", now=0.0)
    only = b2.take(0.0)
    assert only is not None and len(only) == 1


def test_batches_never_mix_models_and_the_oldest_group_goes_first() -> None:
    b = Batcher(max_items=10, max_tokens=10_000, max_wait_s=0.0)
    b.add(msg(1, model="a"), "a1", now=0.0)
    b.add(msg(1, model="b"), "b1", now=0.1)
    b.add(msg(1, model="a", start=1), "a2", now=0.2)
    first = b.take(1.0)
    assert first is not None and first.model_ref == "a" and len(first) == 2
    second = b.take(1.0)
    assert second is not None and second.model_ref == "b"


def test_drop_all_returns_every_held_handle() -> None:
    b = Batcher(max_items=2, max_tokens=100, max_wait_s=1.0)
    b.add(msg(3), "x", now=0.0)
    b.add(msg(1), "y", now=0.0)
    b.take(0.0)
    assert b.drop_all() == ["x", "y"] and len(b) == 0 and b.deadline() is None


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=30),
    max_items=st.integers(1, 50),
    max_tokens=st.integers(1, 200),
    words=st.integers(1, 12),
)
def test_every_item_is_batched_once_and_each_message_acked_once(
    sizes: list[int], max_items: int, max_tokens: int, words: int
) -> None:
    b = Batcher(max_items=max_items, max_tokens=max_tokens, max_wait_s=0.0)
    job = uuid.uuid4()
    start = 0
    for n, size in enumerate(sizes):
        b.add(msg(size, start=start, total=10_000, words=words, job=job), n, now=0.0)
        start += size
    seen: list[int] = []
    acked: list[int] = []
    while (batch := b.take(0.0)) is not None:
        assert len(batch) <= max_items
        assert len(batch) == 1 or batch.tokens <= max_tokens
        seen += [item.index for _, item in batch.pairs()]
        acked += b.complete(batch)
    assert seen == list(range(start))
    assert acked == list(range(len(sizes)))
    assert len(b) == 0 and b.unbatched_items == 0 and b.deadline() is None
