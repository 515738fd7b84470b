"""`textlstm-admin evaluate`: score a bundle on labelled data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from textlstm.cli import options


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"examples   {report['examples']:,}",
        f"accuracy   {report['accuracy']:.4f}",
        f"macro-F1   {report['macro_f1']:.4f}",
        f"ECE        {report['ece']:.4f}",
        "",
        f"{'label':<20} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}",
    ]
    for label, row in report["per_class"].items():
        lines.append(
            f"{label[:20]:<20} {row['precision']:>9.4f} {row['recall']:>9.4f} "
            f"{row['f1']:>9.4f} {row['support']:>8,}"
        )
    labels = report["confusion_matrix"]["labels"]
    width = max(6, *(len(lbl[:12]) for lbl in labels)) + 1
    lines += ["", "confusion matrix (rows: true, columns: predicted)"]
    lines.append(" " * 13 + "".join(f"{lbl[:12]:>{width}}" for lbl in labels))
    for label, row in zip(labels, report["confusion_matrix"]["matrix"], strict=True):
        lines.append(f"{label[:12]:<13}" + "".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines)


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("data", type=click.Path(path_type=Path))
@options.text_column
@options.label_column
@options.batch_size
@options.device
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def evaluate(
    bundle: Path,
    data: Path,
    text_column: str,
    label_column: str,
    batch_size: int,
    device: str,
    as_json: bool,
) -> None:
    """Score BUNDLE on DATA: accuracy, macro-F1, per-class P/R/F1, confusion matrix, ECE."""
    import numpy as np

    from textlstm.classifier.predictor import Classifier
    from textlstm.errors import DataError
    from textlstm.serving.device import resolve_device
    from textlstm.training.datasets import read_texts
    from textlstm.training.metrics import classification_report

    classifier = Classifier.load(bundle, device=resolve_device(device))
    dataset = read_texts(data, text_column=text_column, label_column=label_column)
    index = {label: i for i, label in enumerate(classifier.labels)}
    for ex in dataset.examples:
        if ex.label not in index:
            raise DataError(
                f"{data}: line {ex.line}: label {ex.label!r} is not one the model knows "
                f"({', '.join(classifier.labels)})"
            )
    probs = classifier.predict_proba(dataset.texts, batch_size=batch_size)
    y = np.array([index[str(ex.label)] for ex in dataset.examples])
    report = classification_report(y, probs, classifier.labels)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(format_report(report))
