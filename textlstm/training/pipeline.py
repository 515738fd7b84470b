"""Fit a Classifier from labelled examples: vocabulary → encode → train → calibrate → score.

This is the use case behind `textlstm-admin train`; the CLI adds files, progress and plots.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from textlstm.classifier.calibration import fit_branch_weights, fit_temperature
from textlstm.classifier.embeddings import load_vectors
from textlstm.classifier.inference import batched_logits
from textlstm.classifier.language_model import LoadedLM, check_compatible, classifier_state
from textlstm.classifier.network import LSTMClassifier, LSTMConfig
from textlstm.classifier.ngrams import (
    bigram_buckets_for,
    distinct_ngrams,
    inverse_document_frequency,
)
from textlstm.classifier.predictor import Classifier
from textlstm.classifier.tokenizer import Tokenizer
from textlstm.errors import BundleError, ConfigError, DataError
from textlstm.training.config import ModelOptions, TokenizerOptions, TrainConfig
from textlstm.training.datasets import Example
from textlstm.training.metrics import classification_report
from textlstm.training.trainer import (
    Branch,
    Callback,
    EncodedSplit,
    TrainReport,
    seed_everything,
    train,
)


@dataclass
class FitResult:
    classifier: Classifier
    report: TrainReport
    metrics: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def _encode(
    examples: Sequence[Example], tokenizer: Tokenizer, label_ids: dict[str, int], max_length: int
) -> EncodedSplit:
    return EncodedSplit(
        sequences=[tokenizer.encode(e.text, max_length) for e in examples],
        targets=[label_ids[str(e.label)] for e in examples],
    )


def _truncated(split: EncodedSplit, max_length: int) -> EncodedSplit:
    return EncodedSplit([s[:max_length] for s in split.sequences], split.targets)


def fit_classifier(
    train_examples: Sequence[Example],
    val_examples: Sequence[Example],
    *,
    tokenizer_options: TokenizerOptions | None = None,
    model_options: ModelOptions | None = None,
    train_config: TrainConfig | None = None,
    device: torch.device | str = "cpu",
    embeddings_path: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    lineage: dict[str, Any] | None = None,
    init: LoadedLM | None = None,
) -> FitResult:
    """With `init` (a language model from `pretrain`), the classifier reads with the LM's
    tokenizer, takes the LM's embedding and LSTM sizes (model_options' are overridden: the
    CLI refuses explicit flags that disagree) and starts from its weights."""
    tokenizer_options = tokenizer_options or TokenizerOptions()
    model_options = model_options or ModelOptions()
    train_config = train_config or TrainConfig()
    if init is not None:
        if embeddings_path is not None:
            raise ConfigError("--embeddings and --init both set the embeddings: pass one")
        lm = init.lm_config
        model_options = replace(
            model_options,
            embedding_dim=lm.embedding_dim,
            hidden_size=lm.hidden_size,
            num_layers=lm.num_layers,
            bidirectional=lm.bidirectional,
        )
    started = time.perf_counter()
    seed_everything(train_config.seed)
    labels = sorted({str(e.label) for e in train_examples})
    if len(labels) < 2:
        raise DataError(f"training data has {len(labels)} label(s); a classifier needs at least 2")
    unseen = sorted({str(e.label) for e in val_examples} - set(labels))
    if unseen:
        raise DataError(
            f"validation data has label(s) not in the training data: {', '.join(map(repr, unseen))}"
        )
    label_ids = {label: i for i, label in enumerate(labels)}
    notes: list[str] = []
    if init is not None:
        tokenizer = init.tokenizer
        # What the vocabulary was built with is the LM's business; max_length stays ours.
        lm_options = init.config.get("tokenizer_options", {})
        tokenizer_options = replace(
            tokenizer_options,
            **{k: lm_options[k] for k in ("min_freq", "max_vocab") if k in lm_options},
            lowercase=tokenizer.lowercase,
        )
        notes.append(
            f"initialised from language model {init.digest[:12]}: its vocabulary of "
            f"{len(tokenizer):,} tokens is used (--min-freq and --max-vocab are ignored) and "
            f"its architecture (embedding {init.lm_config.embedding_dim}, hidden "
            f"{init.lm_config.hidden_size}, {init.lm_config.num_layers} layer(s), "
            f"{'bi' if init.lm_config.bidirectional else 'uni'}directional)"
        )
    else:
        tokenizer = Tokenizer.build(
            (e.text for e in train_examples),
            min_freq=tokenizer_options.min_freq,
            max_size=tokenizer_options.max_vocab,
            lowercase=tokenizer_options.lowercase,
        )
    max_length = tokenizer_options.max_length
    # The bag may read further than the LSTM: encode up to its reach, and cut back below if
    # the bag is left out after all.
    reach = max_length
    if model_options.uses_ngrams and model_options.ngram_max_length > max_length:
        reach = model_options.ngram_max_length
    train_split = _encode(train_examples, tokenizer, label_ids, reach)
    val_split = _encode(val_examples, tokenizer, label_ids, reach)

    vectors = None
    embedding_dim = model_options.embedding_dim
    if embeddings_path is not None:
        vectors = load_vectors(embeddings_path, tokenizer, seed=train_config.seed)
        embedding_dim = vectors.matrix.shape[1]
        notes.append(
            f"pretrained embeddings: {vectors.found:,} of {vectors.vocab_size - 2:,} vocabulary "
            f"tokens found ({vectors.coverage:.1%} coverage), dim {embedding_dim}"
        )
    # The bag's table is sized by the data like the vocabulary is: a few thousand short texts
    # need a few thousand buckets, not the upper bound's million.
    read = sum(min(len(s), max_length) for s in train_split.sequences)
    mean_tokens = read / max(1, len(train_split.sequences))
    long_texts = mean_tokens >= model_options.ngram_min_mean_tokens
    buckets = (
        bigram_buckets_for(
            distinct_ngrams(train_split.sequences, model_options.ngram_order),
            model_options.ngram_buckets,
        )
        if model_options.uses_ngrams and long_texts
        else 0
    )
    if not buckets and reach > max_length:
        reach = max_length
        train_split, val_split = _truncated(train_split, reach), _truncated(val_split, reach)
    model_config = LSTMConfig(
        vocab_size=len(tokenizer),
        num_classes=len(labels),
        **{**model_options.to_dict(), "embedding_dim": embedding_dim, "ngram_buckets": buckets},
        lstm_max_length=max_length if reach > max_length else 0,
    )
    model = LSTMClassifier(model_config)
    if model.ngram_idf is not None:
        model.set_ngram_idf(
            inverse_document_frequency(
                train_split.sequences,
                vocab_size=model_config.vocab_size,
                buckets=model_config.ngram_buckets,
                order=model_config.ngram_order,
            )
        )
    if vectors is not None:
        with torch.no_grad():
            model.embedding.weight.copy_(torch.from_numpy(vectors.matrix))
    pretrained: tuple[str, ...] = ()
    if init is not None:
        _load_pretrained(model, init)
        pretrained = ("embedding.", "lstm.")

    def run(branch: Branch | None, prefixes: tuple[str, ...] = ()) -> TrainReport:
        return train(
            model,
            train_split,
            val_split,
            train_config,
            num_classes=len(labels),
            device=device,
            callbacks=callbacks,
            pretrained=prefixes,
            branch=branch,
        )

    # Stacked: the bag first, alone, then the LSTM alone; neither learns to lean on the
    # other, and the mix is fitted on the validation split below.
    stacked = model.ngram_head is not None
    bag_report = run("bag") if stacked else None
    report = run("lstm" if stacked else None, pretrained)

    # Calibrate on the validation split: one temperature, fitted after early stopping picked
    # the epoch, so the split has already steered training once (documented in the README).
    # A stacked network's branch mix is fitted there first, for the same reason a
    # temperature is: held-out texts show which branch generalises.
    val_targets = torch.tensor(val_split.targets)
    branch_weights: list[float] | None = None
    if model.ngram_head is not None:
        branches = batched_logits(
            model, val_split.sequences, device=device, forward=model.branch_logits
        ).chunk(2, dim=1)
        branch_weights = fit_branch_weights(list(branches), val_targets)
        model.set_branch_weights(*branch_weights)
        # What the network's forward computes from the branches: no second pass over the split.
        weights = model.branch_weights.cpu()
        val_logits = weights[0] * branches[0] + weights[1] * branches[1]
    else:
        val_logits = batched_logits(model, val_split.sequences, device=device)
    temperature = fit_temperature(val_logits, val_targets)
    before = classification_report(val_targets.numpy(), val_logits.softmax(-1).numpy(), labels)
    after = classification_report(
        val_targets.numpy(), (val_logits / temperature).softmax(-1).numpy(), labels
    )
    metrics: dict[str, Any] = {
        "validation": after,
        "calibration": {
            "branch_weights": branch_weights,
            "temperature": temperature,
            "ece_before": before["ece"],
            "ece_after": after["ece"],
        },
        "training": {
            "best_epoch": report.best_epoch,
            "epochs_run": len(report.history),
            "stopped_early": report.stopped_early,
            "seconds": time.perf_counter() - started,
            "history": [h.__dict__ for h in report.history],
            "bag_branch": None
            if bag_report is None
            else {
                "best_epoch": bag_report.best_epoch,
                "epochs_run": len(bag_report.history),
                "seconds": bag_report.seconds,
                "history": [h.__dict__ for h in bag_report.history],
            },
        },
    }
    classifier = Classifier(
        model,
        tokenizer,
        labels,
        temperature=temperature,
        max_length=reach,  # what the predictor encodes: the bag's reach when it is further
        device=device,
        metadata={
            "tokenizer_options": tokenizer_options.__dict__,
            "training": train_config.to_dict(),
            "data": {
                **(lineage or {}),
                "train_rows": len(train_examples),
                "validation_rows": len(val_examples),
                "label_counts": {lbl: train_split.targets.count(i) for lbl, i in label_ids.items()},
            },
            "init": None
            if init is None
            else {
                "kind": "language-model",
                "language_model": init.digest,
                "corpus": init.config.get("corpus"),
                "fine_tuning": {
                    "pretrained_lr_scale": train_config.pretrained_lr_scale,
                    "freeze_epochs": train_config.freeze_epochs,
                },
            },
            "embeddings": None
            if vectors is None
            else {
                "found": vectors.found,
                "coverage": vectors.coverage,
                "dim": embedding_dim,
            },
        },
    )
    return FitResult(classifier=classifier, report=report, metrics=metrics, notes=notes)


def _load_pretrained(model: LSTMClassifier, init: LoadedLM) -> None:
    """Copy the LM's embedding and LSTM into `model`; refuse (BundleError) any mismatch."""
    try:
        check_compatible(init.lm_config, model.config)
    except ValueError as exc:
        raise BundleError(f"language model {init.digest[:12]} does not fit: {exc}") from None
    state = classifier_state(init.model.state_dict(), init.lm_config, windowed=model.windowed)
    own = model.state_dict()
    for name, tensor in state.items():
        if name not in own or own[name].shape != tensor.shape:
            found = "missing" if name not in own else tuple(own[name].shape)
            raise BundleError(
                f"language model {init.digest[:12]} does not fit: its {name} has shape "
                f"{tuple(tensor.shape)}, the classifier's is {found}"
            )
    with torch.no_grad():
        for name, tensor in state.items():
            own[name].copy_(tensor)
