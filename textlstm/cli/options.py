"""Click options shared by several commands."""

from __future__ import annotations

import click

text_column = click.option(
    "--text-column", default="text", show_default=True, help="Column (or JSON field) with the text."
)
label_column = click.option(
    "--label-column",
    default="label",
    show_default=True,
    help="Column (or JSON field) with the label.",
)
device = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto, cpu, cuda or cuda:N (auto uses the first GPU when there is one).",
)
batch_size = click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=128,
    show_default=True,
    help="Texts per forward pass.",
)
