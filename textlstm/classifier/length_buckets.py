"""Length bucketing and padding: pure helpers shared by training and inference.

Sorting texts by length inside a window keeps padding (and packed-sequence overhead) small
without giving up shuffling: our measurements found sorting inside a window as the lever that pays.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch

from textlstm.classifier.tokenizer import PAD_ID


def bucketed_batches(
    lengths: Sequence[int],
    batch_size: int,
    *,
    window: int = 50,
    max_tokens: int | None = None,
    rng: random.Random | None = None,
) -> list[list[int]]:
    """Group indices into batches of similar length.

    Indices are taken in windows of `window * batch_size`; each window is sorted by length and
    cut into batches of at most `batch_size` items and (if given) at most `max_tokens` padded
    tokens. With `rng`, the order is shuffled before windowing and the batches are shuffled
    after, for training; without it, order is deterministic, for inference.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    order = list(range(len(lengths)))
    if rng is not None:
        rng.shuffle(order)
    span = max(1, window) * batch_size
    batches: list[list[int]] = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: lengths[i])
        batch: list[int] = []
        longest = 0
        for i in chunk:
            longest_if_added = max(longest, lengths[i])
            too_many_tokens = (
                max_tokens is not None
                and batch
                and longest_if_added * (len(batch) + 1) > max_tokens
            )
            if len(batch) == batch_size or too_many_tokens:
                batches.append(batch)
                batch, longest_if_added = [], lengths[i]
            batch.append(i)
            longest = longest_if_added
        if batch:
            batches.append(batch)
    if rng is not None:
        rng.shuffle(batches)
    return batches


def pad_batch(sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists into (B, T) int64 ids and (B,) int64 lengths (on the CPU)."""
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    ids = np.full((len(sequences), int(lengths.max())), PAD_ID, dtype=np.int64)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
    return torch.from_numpy(ids), torch.from_numpy(lengths)
