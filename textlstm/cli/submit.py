"""`textlstm-admin submit FILE`: enqueue the texts of a CSV/TSV/JSONL file as one job and,
with --wait, follow it to the end and print a summary. Needs only the broker (and the database
for --wait); imports no torch."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import click

from textlstm.cli import options


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--model", default=None, help="Model reference [default: TEXTLSTM_DEFAULT_MODEL].")
@options.text_column
@click.option("--job-id", default=None, help="Your own job UUID (re-sending a job is safe).")
@click.option("--metadata", default=None, help="JSON object stored on the job.")
@click.option(
    "--priority",
    type=click.Choice(["high", "normal", "bulk"]),
    default="normal",
    show_default=True,
    help="Queue priority: workers take high before normal before bulk.",
)
@click.option(
    "--expires",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Seconds from now: items not started by then are stored as expired.",
)
@click.option(
    "--webhook",
    default=None,
    help="http(s) URL POSTed the signed final event when the job ends (docs/notify.md).",
)
@click.option("--wait", is_flag=True, help="Show progress until the job is done, then a summary.")
@click.option(
    "--timeout", type=click.FloatRange(0), default=600.0, show_default=True, help="For --wait."
)
def submit(
    file: Path,
    model: str | None,
    text_column: str,
    job_id: str | None,
    metadata: str | None,
    priority: str,
    expires: float | None,
    webhook: str | None,
    wait: bool,
    timeout: float,
) -> None:
    """Enqueue the texts of FILE (one job; ids are the 0-based row numbers) and print the job id."""
    from textlstm.client import Client
    from textlstm.errors import ValidationError
    from textlstm.training.datasets import read_texts

    meta = None
    if metadata is not None:
        try:
            meta = json.loads(metadata)
        except ValueError as exc:
            raise ValidationError(f"--metadata is not JSON: {exc}") from None
    data = read_texts(file, text_column=text_column, label_column=None)
    client = Client()
    started = time.monotonic()
    jid = client.submit(
        [ex.text for ex in data.examples],
        model=model,
        metadata={"source": str(file), **(meta or {})},
        job_id=job_id,
        priority=priority,
        expires=expires,
        webhook=webhook,
    )
    click.echo(str(jid))
    click.echo(f"submitted {len(data.examples)} text(s) from {file} as job {jid}", err=True)
    if wait:
        _follow(client, jid, len(data.examples), started, timeout)


def _follow(client: object, jid: object, total: int, started: float, timeout: float) -> None:
    from textlstm.client import Client
    from textlstm.client.jobs import FinishWatch
    from textlstm.errors import NotFoundError

    assert isinstance(client, Client)
    deadline = started + timeout
    st = None
    # The job's final event ends the wait at once (the progress bar still reads SQL every
    # 0.25 s); without Redis the same loop simply polls.
    with (
        FinishWatch(client.settings, jid) as watch,  # type: ignore[arg-type]
        click.progressbar(
            length=total, label="classifying", file=click.get_text_stream("stderr")
        ) as bar,
    ):
        shown = 0
        while True:
            try:
                st = client.status(jid)  # type: ignore[arg-type]
            except NotFoundError:
                st = None  # the first worker creates the row
            if st is not None:
                bar.update(st.done - shown)
                shown = st.done
                if st.finished:
                    break
            if time.monotonic() > deadline:
                progress = f"{shown}/{total} items" if st else "not started"
                raise click.ClickException(
                    f"job {jid} not finished after {timeout:g}s ({progress})"
                )
            watch.wait(0.25)
    labels = Counter(r.label or "(error)" for r in client.results(jid))  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    click.echo(
        f"job {jid}: {st.status}, {st.ok} ok, {st.errors} error(s) of {st.expected}, "
        f"model {st.model}, {elapsed:.1f}s ({st.expected / max(elapsed, 1e-9):.0f} texts/s)"
    )
    for label, n in labels.most_common():
        click.echo(f"  {label:<20} {n}")
