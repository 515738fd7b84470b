"""`textlstm-admin results JOB_ID`: print or save a job's predictions (table, CSV or JSON lines)."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import IO, Any

import click

COLUMNS = (
    "item_index",
    "external_id",
    "status",
    "label",
    "score",
    "model",
    "latency_ms",
    "error",
    "probabilities",
)


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Plain aligned columns (None shows as '-'); small helper shared by the jobs command."""
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _write(rows: Iterable[Any], fmt: str, out: IO[str]) -> int:
    n = 0
    if fmt == "jsonl":
        for r in rows:
            out.write(json.dumps(asdict(r), ensure_ascii=False) + "\n")
            n += 1
    elif fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        for r in rows:
            d = asdict(r)
            probs = d["probabilities"]
            d["probabilities"] = json.dumps(probs, ensure_ascii=False) if probs else ""
            writer.writerow(["" if d[c] is None else d[c] for c in COLUMNS])
            n += 1
    else:
        table = [
            (
                r.item_index,
                r.external_id,
                r.status,
                r.label,
                None if r.score is None else f"{r.score:.4f}",
                r.model,
                r.error,
            )
            for r in rows
        ]
        n = len(table)
        headers = ("index", "id", "status", "label", "score", "model", "error")
        out.write(format_table(headers, table) + "\n")
    return n


@click.command()
@click.argument("job_id")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "jsonl"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write to FILE instead of standard output.",
)
def results(job_id: str, fmt: str, output: str | None) -> None:
    """Print the predictions of JOB_ID in item order (partial while the job runs)."""
    from textlstm.client import Client

    client = Client()
    status = client.status(job_id)  # unknown job -> one-line error, exit 1
    rows = client.iter_results(job_id)
    if output is None:
        n = _write(rows, fmt, sys.stdout)
    else:
        with open(output, "w", encoding="utf-8", newline="") as fh:
            n = _write(rows, fmt, fh)
    if output is not None or fmt == "table":
        where = f" to {output}" if output else ""
        click.echo(
            f"{n} of {status.expected} items{where} (job {status.status})",
            err=output is None,
        )
