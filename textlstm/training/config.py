"""Training, model and tokenizer defaults in one torch-free module.

The defaults were tuned with bench/accuracy.py over the four shared datasets (one setting for
all, no per-dataset flags); bench/results/accuracy.md has the numbers.

The CLI reads its option defaults from these dataclasses (so `train --help` stays instant and
the documented defaults are the real ones), and `bench/accuracy.py` measures exactly them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from textlstm.classifier.config import ModelOptions

__all__ = ["ModelOptions", "TokenizerOptions", "TrainConfig"]


@dataclass(frozen=True)
class TokenizerOptions:
    min_freq: int = 2  # singletons become <unk>: fewer untrainable rows, better on small data
    max_vocab: int | None = 50_000
    max_length: int = 256
    lowercase: bool = True


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 0.01
    clip_norm: float = 1.0
    patience: int = 3
    class_weights: bool = False
    word_dropout: float = 0.1  # share of real tokens replaced by <unk>: teaches unseen words
    ema_decay: float | None = 0.995  # per-step decay of a weight average that is validated/kept
    bucket_window: int = 50
    seed: int = 13
    max_steps_per_epoch: int | None = None  # set by --dry-run

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
