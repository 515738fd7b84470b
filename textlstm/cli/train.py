"""`textlstm-admin train`: read data, fit, calibrate, and write a bundle with plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from textlstm.cli import options
from textlstm.cli.progress import EpochProgress
from textlstm.training.config import ModelOptions, TokenizerOptions, TrainConfig


def _epoch_line(stats: Any) -> str:
    # A stacked network trains its bag, then its LSTM: say which one each line is about.
    branch = f"{stats.branch:<4}  " if getattr(stats, "branch", None) else ""
    return (
        f"{branch}epoch {stats.epoch:>2}  loss {stats.train_loss:.4f}  "
        f"val_loss {stats.val_loss:.4f}  "
        f"val_acc {stats.val_accuracy:.4f}  val_macro_f1 {stats.val_macro_f1:.4f}  "
        f"{stats.examples_per_s:,.0f} ex/s"
    )


M, T, C = ModelOptions, TokenizerOptions, TrainConfig  # defaults live in training/config.py
PATH = click.Path(path_type=Path)
PROBABILITY = click.FloatRange(0, 1, max_open=True)


@click.command()
@click.argument("data", type=PATH)
@click.option("--out", "out_dir", required=True, type=PATH, help="Bundle directory to write.")
@click.option("--val-file", type=PATH, help="Validation file [default: split of DATA].")
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.1,
    show_default=True,
    help="Share of DATA held out (stratified by label) when there is no --val-file.",
)
@options.text_column
@options.label_column
@click.option(
    "--epochs",
    type=click.IntRange(1),
    default=C.epochs,
    show_default=True,
    help="Most epochs; early stopping usually ends sooner.",
)
@click.option(
    "--patience",
    type=click.IntRange(1),
    default=C.patience,
    show_default=True,
    help="Epochs without a better validation macro-F1 before stopping.",
)
@click.option("--batch-size", type=click.IntRange(1), default=C.batch_size, show_default=True)
@click.option(
    "--lr",
    "learning_rate",
    type=click.FloatRange(0, min_open=True),
    default=C.learning_rate,
    show_default=True,
    help="AdamW learning rate.",
)
@click.option("--weight-decay", type=click.FloatRange(0), default=C.weight_decay, show_default=True)
@click.option(
    "--clip-norm",
    type=click.FloatRange(0, min_open=True),
    default=C.clip_norm,
    show_default=True,
    help="Gradient norm clipping.",
)
@click.option(
    "--class-weights/--no-class-weights",
    default=C.class_weights,
    show_default=True,
    help="Weight the loss by inverse class frequency (imbalanced data).",
)
@click.option(
    "--word-dropout",
    type=PROBABILITY,
    default=C.word_dropout,
    show_default=True,
    help="Share of tokens replaced by <unk> while training.",
)
@click.option(
    "--max-length",
    type=click.IntRange(1),
    default=T.max_length,
    show_default=True,
    help="Tokens kept per text; longer texts are truncated.",
)
@click.option(
    "--min-freq",
    type=click.IntRange(1),
    default=T.min_freq,
    show_default=True,
    help="Minimum count for a token to enter the vocabulary.",
)
@click.option("--max-vocab", type=click.IntRange(3), default=T.max_vocab, show_default=True)
@click.option("--embedding-dim", type=click.IntRange(1), default=M.embedding_dim, show_default=True)
@click.option("--hidden-size", type=click.IntRange(1), default=M.hidden_size, show_default=True)
@click.option(
    "--layers", "num_layers", type=click.IntRange(1), default=M.num_layers, show_default=True
)
@click.option("--bidirectional/--unidirectional", default=M.bidirectional, show_default=True)
@click.option(
    "--pooling",
    type=click.Choice(["last", "max", "mean"]),
    default=M.pooling,
    show_default=True,
    help="How LSTM states become one vector (over real tokens).",
)
@click.option(
    "--embedding-skip/--no-embedding-skip",
    default=M.embedding_skip,
    show_default=True,
    help="Also pool the word embeddings beside the LSTM states (not with --pooling last).",
)
@click.option(
    "--chunk-length",
    type=click.IntRange(0),
    default=M.chunk_length,
    show_default=True,
    help="Run texts through the LSTM as windows of this many tokens, pooled over the whole "
    "text (0: one window per text).",
)
@click.option(
    "--ngram-buckets",
    type=click.IntRange(0),
    default=M.ngram_buckets,
    show_default=True,
    help="Most hashed-bigram buckets of the n-gram bag beside the LSTM (0: no bag).",
)
@click.option(
    "--ngram-dim",
    type=click.IntRange(0),
    default=M.ngram_dim,
    show_default=True,
    help="Width of the n-gram bag's vectors (0: no bag).",
)
@click.option(
    "--ngram-order",
    type=click.IntRange(2, 3),
    default=M.ngram_order,
    show_default=True,
    help="Longest n-gram in the bag: 2 (unigrams + bigrams) or 3 (+ trigrams).",
)
@click.option(
    "--ngram-max-length",
    type=click.IntRange(0),
    default=M.ngram_max_length,
    show_default=True,
    help="Tokens of a text the n-gram bag reads when more than --max-length (the LSTM's); "
    "0: the same as the LSTM.",
)
@click.option(
    "--ngram-weighting",
    type=click.Choice(["tfidf", "sublinear", "mean"]),
    default=M.ngram_weighting,
    show_default=True,
    help="How the n-gram bag weighs a text's n-grams: tf-idf, unit length (as TF-IDF + "
    "logistic regression does); sublinear, the same with 1 + ln(count) for the count; or a "
    "plain mean (fastText).",
)
@click.option(
    "--ngram-fusion",
    type=click.Choice(["stacked", "joint"]),
    default=M.ngram_fusion,
    show_default=True,
    help="How the n-gram bag meets the LSTM: stacked (each trained alone, their logits mixed "
    "by weights fitted on the validation split) or joint (one output layer over both).",
)
@click.option(
    "--ngram-min-mean-tokens",
    type=click.IntRange(0),
    default=M.ngram_min_mean_tokens,
    show_default=True,
    help="Build the n-gram bag only when the training texts average at least this many tokens "
    "(0: always).",
)
@click.option(
    "--ngram-lr-scale",
    type=click.FloatRange(0, min_open=True),
    default=C.ngram_lr_scale,
    show_default=True,
    help="The n-gram bag's learning rate as a multiple of --lr, for long training texts.",
)
@click.option(
    "--ngram-lr-scale-short",
    type=click.FloatRange(0, min_open=True),
    default=C.ngram_lr_scale_short,
    show_default=True,
    help=f"The same for short training texts (averaging fewer than {C.ngram_short_tokens} tokens).",
)
@click.option(
    "--embedding-dropout", type=PROBABILITY, default=M.embedding_dropout, show_default=True
)
@click.option(
    "--dropout",
    "output_dropout",
    type=PROBABILITY,
    default=M.output_dropout,
    show_default=True,
    help="Dropout before the output layer.",
)
@click.option(
    "--embeddings",
    "embeddings_path",
    type=PATH,
    help="GloVe/word2vec text file to initialise the embeddings.",
)
@click.option(
    "--init",
    "init_path",
    type=PATH,
    metavar="LM",
    help="Start from a language model made by `pretrain`: its vocabulary (--min-freq and "
    "--max-vocab are then ignored), its architecture, its embedding and LSTM weights.",
)
@click.option(
    "--init-lr-scale",
    "pretrained_lr_scale",
    type=click.FloatRange(0, 1, min_open=True),
    default=C.pretrained_lr_scale,
    show_default=True,
    help="With --init: the LSTM learns at --lr times this, the embedding at times its square.",
)
@click.option(
    "--freeze-epochs",
    type=click.IntRange(0),
    default=C.freeze_epochs,
    show_default=True,
    help="With --init: epochs that train only the head before the pretrained layers join.",
)
@click.option(
    "--ema-decay",
    type=click.FloatRange(0, 1, max_open=True),
    default=C.ema_decay or 0.0,
    show_default=True,
    help="Validate and keep a moving average of the weights with this per-step decay (0: off).",
)
@click.option(
    "--schedule",
    type=click.Choice(["onecycle", "constant"]),
    default=C.schedule,
    show_default=True,
    help="Learning-rate schedule over the planned epochs.",
)
@click.option(
    "--token-budget",
    type=click.IntRange(0),
    default=C.token_budget or 0,
    show_default=True,
    help="Plan at most this many training tokens (epochs x tokens per epoch; 0: no limit).",
)
@click.option("--seed", type=int, default=C.seed, show_default=True)
@click.option(
    "--threads",
    type=click.IntRange(1),
    help="Torch CPU threads [default: torch's choice]; use 1 when other jobs share the cores.",
)
@options.device
@click.option("--dry-run", is_flag=True, help="Smoke run: one epoch of a few batches.")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle directory.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar on stderr.")
@click.option(
    "--register",
    "register_name",
    metavar="NAME",
    help="Also register the bundle in the model registry under NAME.",
)
@click.option(
    "--alias",
    "aliases",
    multiple=True,
    metavar="ALIAS",
    help="With --register: point ALIAS (e.g. production) at the new version.",
)
def train(
    data: Path,
    out_dir: Path,
    val_file: Path | None,
    val_fraction: float,
    text_column: str,
    label_column: str,
    device: str,
    dry_run: bool,
    overwrite: bool,
    progress: bool,
    embeddings_path: Path | None,
    init_path: Path | None,
    seed: int,
    register_name: str | None,
    aliases: tuple[str, ...],
    threads: int | None,
    **hyper: Any,
) -> None:
    """Train a classifier on DATA (CSV, TSV or JSONL with text and label columns).

    Writes a model bundle to --out: safetensors weights, config, vocabulary, metrics,
    a sha256 manifest, and training-curve and confusion-matrix PNGs.
    """
    from textlstm.bundle import dump_json
    from textlstm.errors import ConfigError
    from textlstm.serving.device import resolve_device
    from textlstm.training.datasets import read_texts, stratified_split
    from textlstm.training.pipeline import fit_classifier
    from textlstm.training.plots import confusion_matrix_png, training_curve_png

    if aliases and not register_name:
        raise ConfigError("--alias needs --register NAME")
    if out_dir.exists() and not overwrite and out_dir.is_dir() and any(out_dir.iterdir()):
        raise ConfigError(f"output directory {out_dir} exists and is not empty (use --overwrite)")
    if hyper.get("embedding_skip") and hyper.get("pooling") == "last":
        raise ConfigError("--pooling last cannot pool embeddings: add --no-embedding-skip")
    hyper["ema_decay"] = hyper.get("ema_decay") or None
    hyper["token_budget"] = hyper.get("token_budget") or None
    init = _load_init(init_path, hyper, embeddings_path) if init_path is not None else None
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    torch_device = resolve_device(device)
    dataset = read_texts(data, text_column=text_column, label_column=label_column)
    if val_file is not None:
        train_examples = dataset.examples
        val_set = read_texts(val_file, text_column=text_column, label_column=label_column)
        val_examples = val_set.examples
        val_source: dict[str, Any] = {"file": val_file.name, "fingerprint": val_set.fingerprint}
    else:
        train_examples, val_examples = stratified_split(
            dataset.examples, fraction=val_fraction, seed=seed, source=str(data)
        )
        val_source = {"split_of_training_file": True, "fraction": val_fraction, "seed": seed}

    def pick(cls: type) -> dict[str, Any]:
        return {k: hyper[k] for k in cls.__dataclass_fields__ if k in hyper}  # type: ignore[attr-defined]

    train_config = TrainConfig(
        seed=seed,
        epochs=1 if dry_run else hyper["epochs"],
        max_steps_per_epoch=3 if dry_run else None,
        **{k: v for k, v in pick(TrainConfig).items() if k != "epochs"},
    )
    click.echo(
        f"training on {len(train_examples):,} texts, validating on {len(val_examples):,} "
        f"({torch_device})",
        err=True,
    )
    result = fit_classifier(
        train_examples,
        val_examples,
        tokenizer_options=TokenizerOptions(**pick(TokenizerOptions)),
        model_options=ModelOptions(**pick(ModelOptions)),
        train_config=train_config,
        device=torch_device,
        embeddings_path=embeddings_path,
        callbacks=[EpochProgress(enabled=progress, unit="ex", summary=_epoch_line)],
        lineage={"file": data.name, "fingerprint": dataset.fingerprint, "validation": val_source},
        init=init,
    )
    for note in result.notes:
        click.echo(note, err=True)
    metrics = result.metrics
    history = metrics["training"]["history"]
    cm = metrics["validation"]["confusion_matrix"]
    extra = {
        "training_curve.png": training_curve_png(history),
        "confusion_matrix.png": confusion_matrix_png(cm["labels"], cm["matrix"]),
        "history.json": dump_json(history),
    }
    digest = result.classifier.save(
        out_dir, metrics=metrics, extra_files=extra, overwrite=overwrite
    )
    val, cal = metrics["validation"], metrics["calibration"]
    click.echo(
        f"best epoch {metrics['training']['best_epoch']}: validation accuracy "
        f"{val['accuracy']:.4f}, macro-F1 {val['macro_f1']:.4f}; ECE {cal['ece_before']:.4f} → "
        f"{cal['ece_after']:.4f} (temperature {cal['temperature']:.3f})"
    )
    click.echo(f"wrote {out_dir} (sha256 {digest[:12]}…, {metrics['training']['seconds']:.1f}s)")
    if register_name:
        _register(out_dir, register_name, aliases)


# train option -> the LM's config field that decides it under --init.
_FIXED_BY_LM = {
    "embedding_dim": "--embedding-dim",
    "hidden_size": "--hidden-size",
    "num_layers": "--layers",
    "bidirectional": "--bidirectional/--unidirectional",
}


def _load_init(path: Path, hyper: dict[str, Any], embeddings_path: Path | None) -> Any:
    """Load and verify the LM, refusing in one line what contradicts it: an architecture flag
    given explicitly with another value than the LM's (defaults just follow the LM)."""
    from click.core import ParameterSource

    from textlstm.classifier.language_model import load_language_model
    from textlstm.errors import ConfigError

    if embeddings_path is not None:
        raise ConfigError("--embeddings and --init both set the embeddings: pass one")
    loaded = load_language_model(path)
    ctx = click.get_current_context()
    for name, flag in _FIXED_BY_LM.items():
        given = ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)
        theirs = getattr(loaded.lm_config, name)
        if given and hyper[name] != theirs:
            if name == "bidirectional":
                mine = "--bidirectional" if hyper[name] else "--unidirectional"
                lm = "bidirectional" if theirs else "unidirectional"
                raise ConfigError(f"{mine} contradicts the language model {path}, which is {lm}")
            raise ConfigError(
                f"{flag} {hyper[name]} contradicts the language model {path}, which has "
                f"{name} {theirs} (leave the option out to take the LM's)"
            )
    return loaded


def _register(out_dir: Path, name: str, aliases: tuple[str, ...]) -> None:
    from textlstm.settings import get_settings, mask_url
    from textlstm.store.db import session_scope
    from textlstm.store.registry import register_bundle

    settings = get_settings()
    with session_scope(
        settings.database_url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms
    ) as session:
        version, created = register_bundle(
            session=session, path=out_dir, name=name, aliases=aliases
        )
        ref = version.ref
    where = mask_url(settings.database_url)
    verb = "registered" if created else "already registered as"
    suffix = f" (aliases: {', '.join(aliases)})" if aliases else ""
    click.echo(f"{verb} {ref} in {where}{suffix}")
