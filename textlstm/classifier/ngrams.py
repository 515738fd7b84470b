"""Hashed unigram + bigram ids for the bag-of-n-grams branch. Pure torch, no I/O.

Unigrams keep their vocabulary id; a bigram (a, b) goes to bucket `vocab_size + hash(a, b) %
buckets`. The hash is arithmetic on the ids (not Python's salted `hash`), so a bundle gives the
same buckets in every process. Pairs that touch padding get index 0 (`<pad>`), which the
EmbeddingBag leaves out of its mean: padding never changes a text's bag.
"""

from __future__ import annotations

import torch

# Odd multipliers: multiplying by an odd number is a bijection modulo a power of two, so
# neither id's bits are thrown away before the sum is reduced to a bucket.
_MUL_FIRST = 2_654_435_761
_MUL_SECOND = 40_503


def bigram_buckets_for(distinct_bigrams: int, upper: int) -> int:
    """Smallest power of two ≥ twice the distinct bigrams (few collisions), at most `upper`."""
    if upper <= 0:
        return 0
    size = 1
    while size < 2 * max(distinct_bigrams, 1) and size < upper:
        size <<= 1
    return min(size, upper)


def ngram_ids(
    ids: torch.Tensor, lengths: torch.Tensor, *, vocab_size: int, buckets: int
) -> torch.Tensor:
    """ids (B, T) right-padded, lengths (B,) → (B, 2T - 1) indices into the bag's table."""
    if ids.size(1) < 2:
        return ids
    first, second = ids[:, :-1], ids[:, 1:]
    hashed = (first * _MUL_FIRST + second * _MUL_SECOND) % buckets + vocab_size
    positions = torch.arange(1, ids.size(1), device=ids.device)
    real = positions[None, :] < lengths.to(ids.device)[:, None]  # both tokens are real
    return torch.cat([ids, torch.where(real, hashed, torch.zeros_like(hashed))], dim=1)


def distinct_bigrams(sequences: list[list[int]]) -> int:
    """How many different (a, b) id pairs the sequences hold: sizes the hash table."""
    seen: set[tuple[int, int]] = set()
    for seq in sequences:
        seen.update(zip(seq, seq[1:], strict=False))
    return len(seen)
