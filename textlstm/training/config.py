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

__all__ = ["ModelOptions", "PretrainConfig", "TokenizerOptions", "TrainConfig"]


@dataclass(frozen=True)
class TokenizerOptions:
    min_freq: int = 2  # singletons become <unk>: fewer untrainable rows, better on small data
    max_vocab: int | None = 50_000
    max_length: int = 1024  # chunked windows make reading a whole long text affordable
    lowercase: bool = True


@dataclass(frozen=True)
class TrainConfig:
    # The one-cycle plan's length, at most (token_budget cuts it for large sets of long texts;
    # early stopping may end sooner): the constant-rate defaults peaked at epochs 7-10.
    epochs: int = 10
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
    # "onecycle": warm up to learning_rate over the first 30% of the planned steps, then anneal
    # to ~0 (Smith & Topin 2017), so the last planned epoch lands converged; "constant": the
    # pre-schedule behaviour.
    schedule: str = "onecycle"
    # The n-gram bag's learning rate as a multiple of learning_rate: each of its rows is seen
    # rarely (one text's bigrams), so on long texts, which the token budget gives a few epochs,
    # it needs fastText-sized steps (imdb_10k: 87.4 at 1x, 88.8 at 10x, 4 epochs).
    ngram_lr_scale: float = 10.0
    # ...and on short texts (training texts averaging fewer than ngram_short_tokens tokens,
    # which get their 10 epochs; the bag is only built there with ngram_min_mean_tokens 0) the
    # bag at 10x fits the training set before the LSTM learns anything, while at the LSTM's own
    # rate it adds to it (seed 13, test acc / macro-F1: trec 90.2 / 89.3 at 10x, 90.4 / 89.9
    # at 1x, 89.2 / 88.6 at 0.3x; sst5 39.5 / 37.2, 43.1 / 40.0, 41.6 / 39.0; emotion 83.0 /
    # 78.4, 91.1 / 87.3, 92.5 / 88.4; bench/results/wide_ngrams.md has 3 seeds).
    ngram_lr_scale_short: float = 1.0
    ngram_short_tokens: int = 32
    # Plan at most this many training tokens (epochs × tokens per epoch) and at least
    # min_epochs: a large set of long documents gets a few passes, small data its epochs.
    token_budget: int | None = 12_000_000
    min_epochs: int = 3
    max_steps_per_epoch: int | None = None  # set by --dry-run
    # Fine-tuning from a language model (`train --init`). ULMFiT (Howard & Ruder 2018) lowers
    # the pretrained layers' rates (the LSTM at learning_rate × pretrained_lr_scale, the
    # embedding at × scale²) and trains only the head for the first freeze_epochs. Measured on
    # trec with an LM pretrained on its own training texts (seed 13, test accuracy / macro-F1):
    # scale 0.4 + 1 frozen epoch 82.8 / 82.1, scale 0.4 alone 82.8 / 82.0, 1 frozen epoch alone
    # 87.2 / 86.8, neither 88.0 / 87.7 (no pretraining: 88.4 / 87.1). An LM this small, from
    # this little text, is a starting point to move away from, not knowledge to protect, so
    # both are off by default and stay available (--init-lr-scale, --freeze-epochs).
    pretrained_lr_scale: float = 1.0
    freeze_epochs: int = 0

    def __post_init__(self) -> None:
        if self.schedule not in ("onecycle", "constant"):
            raise ValueError(f"schedule must be onecycle or constant, not {self.schedule!r}")
        if not 0.0 < self.pretrained_lr_scale <= 1.0:
            raise ValueError("pretrained_lr_scale must be in (0, 1]")
        if self.freeze_epochs < 0:
            raise ValueError("freeze_epochs must be 0 or more")
        if self.ngram_lr_scale <= 0 or self.ngram_lr_scale_short <= 0:
            raise ValueError("ngram_lr_scale and ngram_lr_scale_short must be positive")

    def bag_lr_scale(self, mean_tokens: float) -> float:
        """The n-gram bag's rate multiple for training texts of this mean length (tokens)."""
        if mean_tokens >= self.ngram_short_tokens:
            return self.ngram_lr_scale
        return self.ngram_lr_scale_short

    def planned_epochs(self, tokens_per_epoch: int) -> int:
        """Epochs to plan for: `epochs`, cut by the token budget, never below min_epochs."""
        if self.token_budget is None or tokens_per_epoch <= 0:
            return self.epochs
        affordable = self.token_budget // tokens_per_epoch
        return max(1, min(self.epochs, max(self.min_epochs, affordable)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PretrainConfig:
    """`textlstm-admin pretrain`: the language model's training. Its architecture defaults are
    the classifier's (ModelOptions), so `pretrain` then `train --init` needs no flags."""

    embedding_dim: int = ModelOptions.embedding_dim
    hidden_size: int = ModelOptions.hidden_size
    num_layers: int = ModelOptions.num_layers
    bidirectional: bool = ModelOptions.bidirectional
    window: int = ModelOptions.chunk_length  # the classifier reads windows of this many tokens
    dropout: float = 0.2
    epochs: int = 5
    batch_size: int = 64  # windows per step
    learning_rate: float = 3e-3
    weight_decay: float = 0.01
    clip_norm: float = 1.0
    val_fraction: float = 0.1  # of the documents, held out for perplexity and the best epoch
    seed: int = 13
    # Sampled softmax: each step scores the true next token against this many tokens drawn by
    # frequency instead of the whole vocabulary (0: the full softmax, always used when the
    # vocabulary is no larger). The vocabulary-wide product was nearly all of a step's time.
    sampled_negatives: int = 1024
    max_steps_per_epoch: int | None = None  # set by --dry-run

    def __post_init__(self) -> None:
        if self.sampled_negatives < 0:
            raise ValueError("sampled_negatives must be 0 (full softmax) or positive")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
