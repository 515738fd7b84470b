import random

from hypothesis import given
from hypothesis import strategies as st

from textlstm.classifier.length_buckets import bucketed_batches, pad_batch


@given(
    st.lists(st.integers(1, 300), max_size=300),
    st.integers(1, 40),
    st.one_of(st.none(), st.integers(300, 2000)),
    st.booleans(),
)
def test_every_index_exactly_once_and_limits_hold(
    lengths: list[int], batch_size: int, max_tokens: int | None, shuffle: bool
) -> None:
    rng = random.Random(0) if shuffle else None
    batches = bucketed_batches(lengths, batch_size, window=4, max_tokens=max_tokens, rng=rng)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    for batch in batches:
        assert 1 <= len(batch) <= batch_size
        if max_tokens is not None and len(batch) > 1:
            assert max(lengths[i] for i in batch) * len(batch) <= max_tokens


def test_sorting_inside_window_keeps_padding_small() -> None:
    rng = random.Random(1)
    lengths = [rng.randint(1, 200) for _ in range(1024)]
    batches = bucketed_batches(lengths, 32, window=32)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    assert padded < 1.1 * sum(lengths)


def test_pad_batch() -> None:
    ids, lengths = pad_batch([[5], [6, 7, 8]])
    assert ids.tolist() == [[5, 0, 0], [6, 7, 8]]
    assert lengths.tolist() == [1, 3]
