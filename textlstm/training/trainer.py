"""The training loop. It knows neither files nor the CLI: callbacks do logging and saving.

AdamW, gradient clipping, optional class-weighted loss, word dropout, length-bucketed batches,
early stopping on validation macro-F1 with the best epoch's weights restored at the end.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch.nn import functional as F

from textlstm.classifier.inference import batched_logits
from textlstm.classifier.length_buckets import bucketed_batches, pad_batch
from textlstm.classifier.tokenizer import PAD_ID, UNK_ID
from textlstm.training.config import TrainConfig
from textlstm.training.metrics import classification_report


@dataclass(frozen=True)
class EncodedSplit:
    sequences: list[list[int]]
    targets: list[int]


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    val_macro_f1: float
    examples_per_s: float
    seconds: float
    best: bool = False
    branch: str | None = None  # which branch of a stacked network this epoch trained


@dataclass
class TrainReport:
    best_epoch: int
    best_val_macro_f1: float
    stopped_early: bool
    seconds: float
    history: list[EpochStats] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Callback:
    """Hooks the loop calls; subclass and override what you need."""

    def on_train_start(self, *, epochs: int, steps_per_epoch: int, examples: int) -> None: ...

    def on_batch_end(self, *, epoch: int, step: int, loss: float, examples: int) -> None: ...

    def on_epoch_end(self, stats: EpochStats) -> None: ...

    def on_train_end(self, report: TrainReport) -> None: ...


Branch = Literal["lstm", "bag"]
BAG_PREFIXES = ("ngrams.", "ngram_head.")  # a stacked network's bag branch; the rest is the LSTM's

_WARMUP_SHARE = 0.3  # OneCycleLR's default share of steps spent raising the rate


def seed_everything(seed: int) -> None:
    """Makes CPU runs repeat exactly (weights init, dropout masks, batch order)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def class_weight_vector(targets: Sequence[int], num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights scaled so a balanced data set gets all ones."""
    counts = np.bincount(np.asarray(targets), minlength=num_classes).astype(np.float64)
    weights = len(targets) / (num_classes * np.maximum(counts, 1.0))
    return torch.tensor(weights, dtype=torch.float32)


def _apply_word_dropout(ids: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    if rate <= 0:
        return ids
    drop = (torch.rand(ids.shape, generator=generator) < rate) & (ids != PAD_ID)
    return ids.masked_fill(drop, UNK_ID)


class _WeightAverage:
    """An exponential moving average of a model's weights, with the usual warm-up so the
    average is not dominated by the random initial weights."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.model = copy.deepcopy(model)
        self.decay = decay
        self.steps = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.steps += 1
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        # One multi-tensor op (as timm's ModelEmaV3 does), not a Python loop per tensor.
        torch._foreach_lerp_(list(self.model.parameters()), list(model.parameters()), 1.0 - decay)


def train(
    model: torch.nn.Module,
    train_split: EncodedSplit,
    val_split: EncodedSplit,
    config: TrainConfig,
    *,
    num_classes: int,
    device: torch.device | str = "cpu",
    callbacks: Sequence[Callback] = (),
    pretrained: Sequence[str] = (),
    branch: Branch | None = None,
) -> TrainReport:
    """Train `model` in place; on return it holds the weights of the best validation epoch.

    `pretrained` lists parameter-name prefixes whose weights came from a language model, lowest
    layer first (e.g. "embedding.", "lstm."): they get discriminative learning rates and stay
    frozen for the first `config.freeze_epochs` epochs. Empty (the default), nothing changes.

    `branch` trains one branch of a stacked network alone, on its own logits and loss, and
    leaves the other's weights as they are: "bag" for the n-gram bag (cheap per epoch, so it
    gets `config.epochs` whatever the token budget says), "lstm" for the rest.
    """
    device = torch.device(device)
    model.to(device)
    rng = random.Random(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    # fused: one kernel over all parameters instead of a loop of small ops per tensor. With the
    # n-gram bag's ~10M dense parameters the step took 175 ms unfused vs 25 ms fused on one
    # CPU thread (imdb_10k batches), a third of all training time.
    named = list(model.named_parameters())
    forward = model
    if branch is not None:
        named = [(n, p) for n, p in named if n.startswith(BAG_PREFIXES) == (branch == "bag")]
        forward = getattr(model, f"{branch}_logits")
    bag = [p for n, p in named if n.startswith("ngrams.")]
    # Lowest pretrained layer first: it gets the smallest rate (lr × scale^depth).
    layers = [[p for n, p in named if n.startswith(prefix)] for prefix in pretrained]
    taken = {id(p) for group in layers for p in group} | {id(p) for p in bag}
    rest = [p for _, p in named if id(p) not in taken]
    groups = [{"params": rest, "lr": config.learning_rate}]
    for depth, params in enumerate(layers):
        scale = config.pretrained_lr_scale ** (len(layers) - depth)
        groups.append({"params": params, "lr": config.learning_rate * scale})
    # What the LSTM reads: tokens only the n-gram bag sees (past lstm_max_length) cost little,
    # so neither the token budget nor the short/long split counts them.
    lstm_cap = getattr(getattr(model, "config", None), "lstm_max_length", 0) or None
    read = [min(len(s), lstm_cap or len(s)) for s in train_split.sequences]
    if bag:
        scale = config.bag_lr_scale(sum(read) / max(1, len(read)))
        model_config = getattr(model, "config", None)
        if getattr(model_config, "ngram_weighting", "mean") != "mean":
            # A unit-length tf-idf bag sums its n-grams' vectors where a mean averages them:
            # a step moves its output about √n times as far for a text of n n-grams. Dividing
            # the rate by √n keeps ngram_lr_scale meaning what it means for a mean.
            order = getattr(model_config, "ngram_order", 2)
            entries = sum(len(s) for s in train_split.sequences) * order
            scale /= math.sqrt(max(1.0, entries / max(1, len(read))))
        groups.append({"params": bag, "lr": config.learning_rate * scale})
    groups = [g for g in groups if g["params"]]
    rates = [g["lr"] for g in groups]
    frozen = [p for group in layers for p in group]
    optimizer = torch.optim.AdamW(
        groups,
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
        fused=device.type in ("cpu", "cuda"),
    )
    weight = (
        class_weight_vector(train_split.targets, num_classes).to(device)
        if config.class_weights
        else None
    )
    lengths = [len(s) for s in train_split.sequences]
    targets = torch.tensor(train_split.targets, dtype=torch.long)
    val_targets = torch.tensor(val_split.targets, dtype=torch.long)
    steps = -(-len(lengths) // config.batch_size)
    if config.max_steps_per_epoch is not None:
        steps = min(steps, config.max_steps_per_epoch)
    epochs = config.epochs if branch == "bag" else config.planned_epochs(sum(read))
    scheduler = (
        torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=rates, total_steps=epochs * steps, pct_start=_WARMUP_SHARE
        )
        if config.schedule == "onecycle"
        else None
    )
    # While the one-cycle rate still rises, validation scores wobble by design: patience starts
    # counting after the warm-up (measured: emotion stopped at epoch 8 of 20 planned, at the
    # peak rate, 84.0% test vs 93.2% before the schedule).
    warmup_epochs = int(_WARMUP_SHARE * epochs) if scheduler is not None else 0
    for cb in callbacks:
        cb.on_train_start(epochs=epochs, steps_per_epoch=steps, examples=len(lengths))

    # With ema_decay, an exponential moving average of the weights is what gets validated and
    # kept: it smooths the noisy last steps of each epoch, which pays on small data sets.
    averaged = _WeightAverage(model, config.ema_decay) if config.ema_decay else None
    scored = averaged.model if averaged else model
    best_f1, best_epoch, best_state = -1.0, 0, copy.deepcopy(model.state_dict())
    history: list[EpochStats] = []
    started = time.perf_counter()
    stale = 0
    for epoch in range(1, epochs + 1):
        # Gradual unfreezing, shortened to two stages: the head alone, then everything. A
        # parameter without a gradient is skipped by AdamW (weight decay included).
        for p in frozen:
            p.requires_grad_(epoch > config.freeze_epochs)
        model.train()
        t0 = time.perf_counter()
        batches = bucketed_batches(
            lengths, config.batch_size, window=config.bucket_window, rng=rng
        )[:steps]
        total_loss, seen = 0.0, 0
        for step, batch in enumerate(batches, start=1):
            ids, lens = pad_batch([train_split.sequences[i] for i in batch])
            ids = _apply_word_dropout(ids, config.word_dropout, generator).to(device)
            logits = forward(ids, lens)
            loss = F.cross_entropy(logits, targets[batch].to(device), weight=weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if averaged is not None:
                averaged.update(model)
            total_loss += loss.item() * len(batch)
            seen += len(batch)
            for cb in callbacks:
                cb.on_batch_end(epoch=epoch, step=step, loss=loss.item(), examples=len(batch))
        train_seconds = time.perf_counter() - t0

        val_logits = batched_logits(
            scored,
            val_split.sequences,
            device=device,
            forward=getattr(scored, f"{branch}_logits") if branch else None,
        )
        val_loss = float(F.cross_entropy(val_logits, val_targets))
        report = classification_report(
            val_targets.numpy(),
            val_logits.softmax(-1).numpy(),
            [str(i) for i in range(num_classes)],
        )
        improved = report["macro_f1"] > best_f1
        if improved:
            best_f1, best_epoch, stale = report["macro_f1"], epoch, 0
            best_state = copy.deepcopy(scored.state_dict())
        elif epoch > warmup_epochs:
            stale += 1
        stats = EpochStats(
            epoch=epoch,
            train_loss=total_loss / max(seen, 1),
            val_loss=val_loss,
            val_accuracy=report["accuracy"],
            val_macro_f1=report["macro_f1"],
            examples_per_s=seen / max(train_seconds, 1e-9),
            seconds=time.perf_counter() - t0,
            best=improved,
            branch=branch,
        )
        history.append(stats)
        for cb in callbacks:
            cb.on_epoch_end(stats)
        if stale >= config.patience:
            break

    for p in frozen:
        p.requires_grad_(True)  # a run shorter than freeze_epochs leaves none frozen behind
    model.load_state_dict(best_state)
    result = TrainReport(
        best_epoch=best_epoch,
        best_val_macro_f1=best_f1,
        stopped_early=len(history) < epochs,
        seconds=time.perf_counter() - started,
        history=history,
    )
    for cb in callbacks:
        cb.on_train_end(result)
    return result
