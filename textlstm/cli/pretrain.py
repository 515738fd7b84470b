"""`textlstm-admin pretrain`: train a language model on unlabelled text for `train --init`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from textlstm.cli import options
from textlstm.cli.progress import EpochProgress
from textlstm.training.config import PretrainConfig, TokenizerOptions

P, T = PretrainConfig, TokenizerOptions  # defaults live in training/config.py
PATH = click.Path(path_type=Path)


def _epoch_line(stats: Any) -> str:
    return (
        f"epoch {stats.epoch:>2}  loss {stats.train_loss:.4f}  val_loss {stats.val_loss:.4f}  "
        f"val_perplexity {stats.val_perplexity:,.1f}  {stats.tokens_per_s:,.0f} tokens/s"
    )


@click.command()
@click.argument("corpus", type=PATH)
@click.option("--out", "out_dir", required=True, type=PATH, help="LM bundle directory to write.")
@options.text_column
@click.option(
    "--epochs", type=click.IntRange(1), default=P.epochs, show_default=True, help="Epochs to run."
)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=P.batch_size,
    show_default=True,
    help="Windows per step.",
)
@click.option(
    "--lr",
    "learning_rate",
    type=click.FloatRange(0, min_open=True),
    default=P.learning_rate,
    show_default=True,
    help="Peak AdamW learning rate (one-cycle schedule).",
)
@click.option("--weight-decay", type=click.FloatRange(0), default=P.weight_decay, show_default=True)
@click.option(
    "--clip-norm",
    type=click.FloatRange(0, min_open=True),
    default=P.clip_norm,
    show_default=True,
)
@click.option(
    "--dropout",
    type=click.FloatRange(0, 1, max_open=True),
    default=P.dropout,
    show_default=True,
    help="Dropout on the embeddings and the LSTM outputs.",
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=P.val_fraction,
    show_default=True,
    help="Share of the documents held out to measure perplexity.",
)
@click.option(
    "--window",
    type=click.IntRange(2),
    default=P.window,
    show_default=True,
    help="Tokens per window, each read from a zero state as the classifier reads them.",
)
@click.option(
    "--max-length",
    type=click.IntRange(2),
    default=T.max_length,
    show_default=True,
    help="Tokens kept per document.",
)
@click.option(
    "--min-freq",
    type=click.IntRange(1),
    default=T.min_freq,
    show_default=True,
    help="Minimum count for a token to enter the vocabulary.",
)
@click.option("--max-vocab", type=click.IntRange(3), default=T.max_vocab, show_default=True)
@click.option("--embedding-dim", type=click.IntRange(1), default=P.embedding_dim, show_default=True)
@click.option("--hidden-size", type=click.IntRange(1), default=P.hidden_size, show_default=True)
@click.option(
    "--layers", "num_layers", type=click.IntRange(1), default=P.num_layers, show_default=True
)
@click.option(
    "--bidirectional/--unidirectional",
    default=P.bidirectional,
    show_default=True,
    help="Train a forward and a backward LM (one layer) for a bidirectional classifier.",
)
@click.option(
    "--sampled-negatives",
    type=click.IntRange(0),
    default=P.sampled_negatives,
    show_default=True,
    help="Score each next token against this many tokens drawn by frequency, not the whole "
    "vocabulary (sampled softmax; 0: full softmax). Perplexity is always measured in full.",
)
@click.option("--seed", type=int, default=P.seed, show_default=True)
@click.option(
    "--threads",
    type=click.IntRange(1),
    help="Torch CPU threads [default: torch's choice]; use 1 when other jobs share the cores.",
)
@options.device
@click.option("--dry-run", is_flag=True, help="Smoke run: one epoch of a few batches.")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle directory.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar on stderr.")
def pretrain(
    corpus: Path,
    out_dir: Path,
    text_column: str,
    max_length: int,
    min_freq: int,
    max_vocab: int,
    threads: int | None,
    device: str,
    dry_run: bool,
    overwrite: bool,
    progress: bool,
    **settings: Any,
) -> None:
    """Train a language model on unlabelled CORPUS for `train --init`.

    CORPUS is a text file (.txt: one document per line) or a CSV, TSV or JSONL file whose
    text column is read (other columns, labels included, are ignored). The embedding and LSTM
    learn to predict each next token (and, bidirectional, each previous one) over the
    classifier's windows. Writes an LM bundle to --out: safetensors weights, config,
    vocabulary, metrics (validation perplexity) and a sha256 manifest of kind language-model.
    """
    from textlstm.classifier.language_model import save_language_model
    from textlstm.errors import ConfigError
    from textlstm.serving.device import resolve_device
    from textlstm.training.pretrain import pretrain_language_model, read_corpus

    if out_dir.exists() and not overwrite and out_dir.is_dir() and any(out_dir.iterdir()):
        raise ConfigError(f"output directory {out_dir} exists and is not empty (use --overwrite)")
    if settings["bidirectional"] and settings["num_layers"] > 1:
        raise ConfigError(
            "a bidirectional language model has one layer: pass --unidirectional for --layers "
            f"{settings['num_layers']}"
        )
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    torch_device = resolve_device(device)
    data = read_corpus(corpus, text_column=text_column)
    config = PretrainConfig(
        **{k: v for k, v in settings.items() if k != "epochs"},
        epochs=1 if dry_run else settings["epochs"],
        max_steps_per_epoch=3 if dry_run else None,
    )
    tokenizer_options = TokenizerOptions(
        min_freq=min_freq, max_vocab=max_vocab, max_length=max_length
    )
    click.echo(f"pretraining on {len(data.texts):,} documents ({torch_device})", err=True)
    result = pretrain_language_model(
        data.texts,
        tokenizer_options=tokenizer_options,
        config=config,
        device=torch_device,
        callbacks=[EpochProgress(enabled=progress, unit="win", summary=_epoch_line)],
        source=str(corpus),
    )
    digest = save_language_model(
        out_dir,
        result.model,
        result.tokenizer,
        metrics=result.metrics,
        metadata={
            "tokenizer_options": tokenizer_options.__dict__,
            "training": config.to_dict(),
            "corpus": {
                "file": corpus.name,
                "fingerprint": data.fingerprint,
                "documents": len(data.texts),
            },
        },
        overwrite=overwrite,
    )
    val, training = result.metrics["validation"], result.metrics["training"]
    click.echo(
        f"best epoch {training['best_epoch']}: validation perplexity {val['perplexity']:,.1f} "
        f"over {int(val['tokens']):,} held-out tokens, vocabulary {len(result.tokenizer):,}"
    )
    click.echo(f"wrote {out_dir} (sha256 {digest[:12]}…, {training['seconds']:.1f}s)")
