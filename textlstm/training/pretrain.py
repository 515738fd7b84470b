"""Pretrain a language model on unlabelled text: corpus → vocabulary → windows → train.

The use case behind `textlstm-admin pretrain`. Each document is cut into the windows the
classifier will read (`window` tokens, each from a zero state) rather than concatenated into one
stream for truncated backpropagation through time: the classifier never carries a state across
windows or texts, so an LM that learned to lean on long carried context would hand it features
it never sees. Windows are batched by length like the classifier's batches.

Nothing here prints or exits; bad input is a DataError naming the file and line.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from textlstm.bundle import sha256_bytes
from textlstm.classifier.language_model import LanguageModel, LMConfig, NegativeSampler
from textlstm.classifier.length_buckets import bucketed_batches, pad_batch
from textlstm.classifier.tokenizer import Tokenizer
from textlstm.errors import ConfigError, DataError
from textlstm.training.config import PretrainConfig, TokenizerOptions
from textlstm.training.datasets import FORMATS, _decode, read_texts
from textlstm.training.trainer import seed_everything

# One document per line: plain text files, whatever they are called.
TEXT_SUFFIXES = (".txt", ".text")


@dataclass(frozen=True)
class Corpus:
    path: str
    texts: list[str]
    fingerprint: str  # sha256 of the file bytes: lineage recorded in the LM and its classifiers


def read_corpus(path: str | Path, *, text_column: str = "text") -> Corpus:
    """A text file (one document per line, blank lines skipped), or a CSV/TSV/JSONL file's
    `text_column` (other columns are ignored, labels included)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in FORMATS:
        data = read_texts(p, text_column=text_column, label_column=None)
        return Corpus(str(p), data.texts, data.fingerprint)
    if suffix not in TEXT_SUFFIXES:
        known = ", ".join(sorted({*TEXT_SUFFIXES, *FORMATS}))
        raise DataError(f"{p}: unknown corpus type {p.suffix!r} (expected one of {known})")
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{p}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{p}: is a directory, expected a file") from None
    except OSError as exc:
        raise DataError(f"{p}: cannot read ({exc.strerror})") from None
    texts = [line for line in _decode(p, raw).splitlines() if line.strip()]
    if not texts:
        raise DataError(f"{p}: file has no text (expected one document per line)")
    return Corpus(str(p), texts, sha256_bytes(raw))


def split_documents(
    texts: Sequence[str], *, fraction: float, seed: int, source: str
) -> tuple[list[str], list[str]]:
    """(train, validation) documents, a seeded random share held out; order kept."""
    if len(texts) < 2:
        raise DataError(f"{source}: a corpus needs at least 2 documents (one is held out)")
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    held = set(order[: min(len(texts) - 1, max(1, round(len(texts) * fraction)))])
    train = [t for i, t in enumerate(texts) if i not in held]
    val = [t for i, t in enumerate(texts) if i in held]
    return train, val


def corpus_windows(
    texts: Sequence[str], tokenizer: Tokenizer, *, max_length: int, window: int
) -> list[list[int]]:
    """Each text's first `max_length` tokens cut into windows; a 1-token tail predicts nothing."""
    out: list[list[int]] = []
    for text in texts:
        ids = tokenizer.encode(text, max_length)
        out.extend(ids[i : i + window] for i in range(0, len(ids), window) if len(ids) - i >= 2)
    return out


@dataclass
class LMEpochStats:
    epoch: int
    train_loss: float  # with sampled negatives, the sampled loss (below the full softmax's)
    val_loss: float
    val_perplexity: float
    tokens_per_s: float
    seconds: float
    best: bool = False


@dataclass
class PretrainResult:
    model: LanguageModel
    tokenizer: Tokenizer
    metrics: dict[str, Any]
    history: list[LMEpochStats] = field(default_factory=list)


@torch.no_grad()
def evaluate_lm(
    model: LanguageModel, windows: Sequence[Sequence[int]], *, batch_size: int, device: torch.device
) -> dict[str, float]:
    """Validation loss and perplexity, per direction and their mean (nats per token)."""
    model.eval()
    directions = 2 if model.config.bidirectional else 1
    totals, counts = [0.0] * directions, [0] * directions
    lengths = [len(w) for w in windows]
    for batch in bucketed_batches(lengths, batch_size):
        ids, lens = pad_batch([windows[i] for i in batch])
        for d, (total, count) in enumerate(model.direction_losses(ids.to(device), lens)):
            totals[d] += float(total)
            counts[d] += count
    losses = [t / max(c, 1) for t, c in zip(totals, counts, strict=True)]
    mean = sum(losses) / len(losses)
    out = {"loss": mean, "perplexity": math.exp(mean), "forward_perplexity": math.exp(losses[0])}
    if directions == 2:
        out["backward_perplexity"] = math.exp(losses[1])
    out["tokens"] = float(counts[0])
    return out


def pretrain_language_model(
    texts: Sequence[str],
    *,
    tokenizer_options: TokenizerOptions | None = None,
    config: PretrainConfig | None = None,
    device: torch.device | str = "cpu",
    callbacks: Sequence[Any] = (),
    source: str = "corpus",
) -> PretrainResult:
    """Train an LM on `texts`; it holds its best validation epoch's weights on return.

    Callbacks are duck-typed like the classifier trainer's: on_train_start, on_batch_end,
    on_epoch_end(LMEpochStats), on_train_end.
    """
    tokenizer_options = tokenizer_options or TokenizerOptions()
    config = config or PretrainConfig()
    device = torch.device(device)
    started = time.perf_counter()
    seed_everything(config.seed)
    try:
        lm_config_probe = LMConfig(
            vocab_size=3,
            embedding_dim=config.embedding_dim,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            bidirectional=config.bidirectional,
            window=config.window,
            dropout=config.dropout,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    train_texts, val_texts = split_documents(
        texts, fraction=config.val_fraction, seed=config.seed, source=source
    )
    # The vocabulary comes from the whole corpus: it is what classifiers initialised from this
    # LM will read with, and held-out documents are the user's text too.
    tokenizer = Tokenizer.build(
        texts,
        min_freq=tokenizer_options.min_freq,
        max_size=tokenizer_options.max_vocab,
        lowercase=tokenizer_options.lowercase,
    )
    if len(tokenizer) < 3:
        raise DataError(
            f"{source}: no token occurs {tokenizer_options.min_freq} times or more; "
            "add text or lower --min-freq"
        )
    cut = {"max_length": tokenizer_options.max_length, "window": config.window}
    train_windows = corpus_windows(train_texts, tokenizer, **cut)
    val_windows = corpus_windows(val_texts, tokenizer, **cut)
    if not train_windows or not val_windows:
        raise DataError(f"{source}: documents are too short to predict a next token (≥ 2 tokens)")
    lm_config = LMConfig(**{**lm_config_probe.to_dict(), "vocab_size": len(tokenizer)})
    model = LanguageModel(lm_config).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
        fused=device.type in ("cpu", "cuda"),
    )
    sampler = None
    if 0 < config.sampled_negatives < len(tokenizer):
        counts = torch.bincount(
            torch.tensor([i for w in train_windows for i in w], dtype=torch.long),
            minlength=len(tokenizer),
        )
        sampler = NegativeSampler(counts, config.sampled_negatives, seed=config.seed, device=device)
    rng = random.Random(config.seed)
    lengths = [len(w) for w in train_windows]
    steps = -(-len(lengths) // config.batch_size)
    if config.max_steps_per_epoch is not None:
        steps = min(steps, config.max_steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.learning_rate, total_steps=config.epochs * steps, pct_start=0.3
    )
    for cb in callbacks:
        cb.on_train_start(epochs=config.epochs, steps_per_epoch=steps, examples=len(lengths))
    history: list[LMEpochStats] = []
    best_loss, best_epoch, best_state = math.inf, 0, copy.deepcopy(model.state_dict())
    for epoch in range(1, config.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        total, tokens = 0.0, 0
        batches = bucketed_batches(lengths, config.batch_size, rng=rng)[:steps]
        for step, batch in enumerate(batches, start=1):
            ids, lens = pad_batch([train_windows[i] for i in batch])
            loss = model(ids.to(device), lens, sampler)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
            optimizer.step()
            scheduler.step()
            batch_tokens = int(lens.sum())
            total += loss.item() * batch_tokens
            tokens += batch_tokens
            for cb in callbacks:
                cb.on_batch_end(epoch=epoch, step=step, loss=loss.item(), examples=len(batch))
        seconds = time.perf_counter() - t0
        val = evaluate_lm(model, val_windows, batch_size=config.batch_size, device=device)
        improved = val["loss"] < best_loss
        if improved:
            best_loss, best_epoch = val["loss"], epoch
            best_state = copy.deepcopy(model.state_dict())
        stats = LMEpochStats(
            epoch=epoch,
            train_loss=total / max(tokens, 1),
            val_loss=val["loss"],
            val_perplexity=val["perplexity"],
            tokens_per_s=tokens / max(seconds, 1e-9),
            seconds=time.perf_counter() - t0,
            best=improved,
        )
        history.append(stats)
        for cb in callbacks:
            cb.on_epoch_end(stats)
    model.load_state_dict(best_state)
    model.eval()
    validation = evaluate_lm(model, val_windows, batch_size=config.batch_size, device=device)
    metrics = {
        "validation": validation,
        "training": {
            "best_epoch": best_epoch,
            "epochs_run": len(history),
            "seconds": time.perf_counter() - started,
            "documents": len(train_texts),
            "validation_documents": len(val_texts),
            "windows": len(train_windows),
            "tokens": sum(lengths),
            "history": [asdict(h) for h in history],
        },
    }
    for cb in callbacks:
        cb.on_train_end(metrics)
    return PretrainResult(model=model, tokenizer=tokenizer, metrics=metrics, history=history)
