"""Hashed n-gram ids (unigrams, bigrams, optionally trigrams) for the bag-of-n-grams branch.

Pure torch, no I/O. Unigrams keep their vocabulary id; a bigram (a, b) goes to bucket
`vocab_size + hash(a, b) % buckets` and a trigram (a, b, c) to `vocab_size + hash(a, b, c) %
buckets` in the same table (a different set of multipliers, so a trigram does not land where its
leading bigram does). The hash is arithmetic on the ids (not Python's salted `hash`), so a bundle
gives the same buckets in every process. N-grams that touch padding get index 0 (`<pad>`), which
the EmbeddingBag leaves out of its mean: padding never changes a text's bag.
"""

from __future__ import annotations

import torch

# Odd multipliers: multiplying by an odd number is a bijection modulo a power of two, so
# no id's bits are thrown away before the sum is reduced to a bucket. Ids stay below 2^20
# (the vocabulary), so the largest sum (< 2^20 · 2^32 · 3) fits int64 with room to spare.
_MUL_FIRST = 2_654_435_761
_MUL_SECOND = 40_503
_TRI_FIRST = 2_246_822_519
_TRI_SECOND = 3_266_489_917
_TRI_THIRD = 668_265_263

ORDERS = (2, 3)


def bigram_buckets_for(distinct_bigrams: int, upper: int) -> int:
    """Smallest power of two ≥ twice the distinct n-grams (few collisions), at most `upper`."""
    if upper <= 0:
        return 0
    size = 1
    while size < 2 * max(distinct_bigrams, 1) and size < upper:
        size <<= 1
    return min(size, upper)


def ngram_ids(
    ids: torch.Tensor,
    lengths: torch.Tensor,
    *,
    vocab_size: int,
    buckets: int,
    order: int = 2,
) -> torch.Tensor:
    """ids (B, T) right-padded, lengths (B,) → (B, T + (T-1) [+ (T-2)]) indices into the bag.

    order 2: unigrams and bigrams (the layout of every bundle before `ngram_order`); order 3
    adds trigrams after them.
    """
    if order not in ORDERS:
        raise ValueError(f"n-gram order must be 2 or 3, not {order}")
    steps = ids.size(1)
    lengths = lengths.to(ids.device)
    parts = [ids]
    if steps >= 2:
        first, second = ids[:, :-1], ids[:, 1:]
        hashed = (first * _MUL_FIRST + second * _MUL_SECOND) % buckets + vocab_size
        ends = torch.arange(1, steps, device=ids.device)  # position of each bigram's last token
        real = ends[None, :] < lengths[:, None]  # both tokens are real
        parts.append(torch.where(real, hashed, torch.zeros_like(hashed)))
    if order >= 3 and steps >= 3:
        a, b, c = ids[:, :-2], ids[:, 1:-1], ids[:, 2:]
        hashed = (a * _TRI_FIRST + b * _TRI_SECOND + c * _TRI_THIRD) % buckets + vocab_size
        ends = torch.arange(2, steps, device=ids.device)
        real = ends[None, :] < lengths[:, None]
        parts.append(torch.where(real, hashed, torch.zeros_like(hashed)))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def inverse_document_frequency(
    sequences: list[list[int]],
    *,
    vocab_size: int,
    buckets: int,
    order: int = 2,
    batch_size: int = 256,
) -> torch.Tensor:
    """Smoothed idf, log((1 + N) / (1 + df)) + 1 (scikit-learn's), per bag row over `sequences`.

    A row no training text holds gets the largest weight, as an unseen term does in TF-IDF;
    its vector is still the untrained initial one, so it adds little.
    """
    rows = vocab_size + buckets
    df = torch.zeros(rows, dtype=torch.float64)
    for start in range(0, len(sequences), batch_size):
        chunk = [s or [0] for s in sequences[start : start + batch_size]]
        lengths = torch.tensor([len(s) for s in chunk])
        ids = torch.zeros(len(chunk), int(lengths.max()), dtype=torch.long)
        for i, seq in enumerate(chunk):
            ids[i, : len(seq)] = torch.tensor(seq)
        bag = ngram_ids(ids, lengths, vocab_size=vocab_size, buckets=buckets, order=order)
        # One count per text and row: offset each text's rows so unique() dedups within it.
        keyed = (torch.arange(len(chunk))[:, None] * rows + bag).flatten().unique()
        df += torch.bincount(keyed % rows, minlength=rows).to(torch.float64)
    idf = torch.log((1.0 + len(sequences)) / (1.0 + df)) + 1.0
    return idf.to(torch.float32)


def distinct_ngrams(sequences: list[list[int]], order: int = 2) -> int:
    """How many different id n-grams of length 2..order the sequences hold: sizes the table."""
    seen: set[tuple[int, ...]] = set()
    for seq in sequences:
        seen.update(zip(seq, seq[1:], strict=False))
        if order >= 3:
            seen.update(zip(seq, seq[1:], seq[2:], strict=False))
    return len(seen)


def distinct_bigrams(sequences: list[list[int]]) -> int:
    """How many different (a, b) id pairs the sequences hold (`distinct_ngrams`, order 2)."""
    return distinct_ngrams(sequences, 2)
