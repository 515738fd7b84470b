"""`textlstm-admin results`: print or save predictions (table, CSV or JSON lines), of one job or
selected by model, time range and score; streamed, so an export of millions of rows runs in
constant memory."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import IO, Any

import click


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
            out.write(json.dumps(r.to_json(), ensure_ascii=False) + "\n")
            n += 1
    elif fmt == "csv":
        from textlstm.client.jobs import CSV_COLUMNS

        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for r in rows:
            writer.writerow(r.csv_row())
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


#: Rows per Parquet row group: what the writer holds in memory at once.
PARQUET_ROWS = 10_000


def _write_parquet(rows: Iterable[Any], path: str) -> int:
    """Parquet in row groups of PARQUET_ROWS, so memory stays flat; probabilities as a map."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise click.ClickException(
            "--format parquet needs the parquet extra: pip install 'textlstm[parquet]'"
        ) from None
    schema = pa.schema(
        [
            ("job_id", pa.string()),
            ("item_index", pa.int64()),
            ("external_id", pa.string()),
            ("status", pa.string()),
            ("label", pa.string()),
            ("score", pa.float64()),
            ("model", pa.string()),
            ("latency_ms", pa.float64()),
            ("error", pa.string()),
            ("probabilities", pa.map_(pa.string(), pa.float64())),
        ]
    )
    n = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        batch: list[dict[str, Any]] = []
        for r in rows:
            d = asdict(r)
            d["job_id"] = str(d["job_id"]) if d["job_id"] else None
            probs = d["probabilities"]
            d["probabilities"] = list(probs.items()) if probs else None
            batch.append(d)
            if len(batch) == PARQUET_ROWS:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                n += len(batch)
                batch = []
        if batch or n == 0:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            n += len(batch)
    return n


def _when(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 date or time; without an offset it is UTC (as the database stores it)."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 date or time (e.g. 2026-12-01 or 2026-12-01T08:00Z)",
            param_hint=option,
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@click.command()
@click.argument("job_id", required=False)
@click.option(
    "--model",
    "model",
    default=None,
    help="Only this model: name@N, name@alias, or a name (all its versions).",
)
@click.option(
    "--since", default=None, help="Stored at or after this ISO 8601 date/time (UTC if no offset)."
)
@click.option(
    "--until", default=None, help="Stored before this ISO 8601 date/time (UTC if no offset)."
)
@click.option(
    "--max-score",
    type=click.FloatRange(0, 1),
    default=None,
    help="Only items whose top probability is at most this (e.g. 0.6: to label).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "jsonl", "parquet"]),
    default="table",
    show_default=True,
    help="Output format (parquet: with --output, needs the parquet extra).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write to FILE instead of standard output.",
)
def results(
    job_id: str | None,
    model: str | None,
    since: str | None,
    until: str | None,
    max_score: float | None,
    fmt: str,
    output: str | None,
) -> None:
    """Print the predictions of JOB_ID in item order (partial while the job runs), or those
    selected by --model, --since/--until and --max-score, job by job in item order."""
    from textlstm.client import Client

    start, end = _when(since, "--since"), _when(until, "--until")
    if job_id is None and model is None and start is None and end is None and max_score is None:
        raise click.UsageError(
            "give a JOB_ID, or select with --model, --since, --until or --max-score"
        )
    if fmt == "table" and job_id is None:
        fmt_hint = "a selection can be large: use --format csv or jsonl (and --output FILE)"
        raise click.UsageError(f"--format table prints one job; {fmt_hint}")
    if fmt == "parquet" and output is None:
        raise click.UsageError("--format parquet writes a file: give --output FILE")
    client = Client()
    status = client.status(job_id) if job_id is not None else None  # unknown job: exit 1
    rows = client.export(job_id=job_id, model=model, since=start, until=end, max_score=max_score)
    if output is None:
        n = _write(rows, fmt, sys.stdout)
    elif fmt == "parquet":
        n = _write_parquet(rows, output)
    else:
        with open(output, "w", encoding="utf-8", newline="") as fh:
            n = _write(rows, fmt, fh)
    if output is not None or fmt == "table":
        where = f" to {output}" if output else ""
        of = f" of {status.expected}" if status is not None else ""
        job = f" (job {status.status})" if status is not None else ""
        click.echo(f"{n}{of} items{where}{job}", err=output is None)
