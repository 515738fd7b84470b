"""`textlstm-admin predict`: classify texts given as arguments or in a file."""

from __future__ import annotations

import json
from pathlib import Path

import click

from textlstm.cli import options


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("texts", nargs=-1)
@click.option(
    "--input",
    "input_file",
    type=click.Path(path_type=Path),
    help="CSV, TSV or JSONL file of texts.",
)
@options.text_column
@click.option(
    "--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table", show_default=True
)
@options.batch_size
@options.device
def predict(
    bundle: Path,
    texts: tuple[str, ...],
    input_file: Path | None,
    text_column: str,
    fmt: str,
    batch_size: int,
    device: str,
) -> None:
    """Classify TEXTS (and/or the texts of --input) with the model in BUNDLE.

    Blank texts get no label and an error; texts longer than the model's max length are
    classified on their first tokens and marked truncated.
    """
    from textlstm.classifier.predictor import Classifier
    from textlstm.errors import ConfigError
    from textlstm.serving.device import resolve_device
    from textlstm.training.datasets import read_texts

    all_texts = list(texts)
    if input_file is not None:
        all_texts += read_texts(input_file, text_column=text_column, label_column=None).texts
    if not all_texts:
        raise ConfigError("nothing to classify: give TEXT arguments or --input FILE")
    classifier = Classifier.load(bundle, device=resolve_device(device))
    predictions = classifier.predict(all_texts, batch_size=batch_size)
    if fmt == "jsonl":
        for text, pred in zip(all_texts, predictions, strict=True):
            click.echo(json.dumps({"text": text, **pred.to_dict()}, ensure_ascii=False))
        return
    click.echo(f"{'label':<16} {'score':>6}  text")
    for text, pred in zip(all_texts, predictions, strict=True):
        shown = " ".join(text.split())
        shown = shown if len(shown) <= 70 else shown[:69] + "…"
        if pred.label is None:
            click.echo(f"{'-':<16} {'-':>6}  {shown}  ({pred.error})")
        else:
            click.echo(f"{pred.label[:16]:<16} {pred.score:>6.3f}  {shown}")
