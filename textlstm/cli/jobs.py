"""`textlstm-admin jobs`: list jobs, show one job's progress, model and timings, cancel a job,
recover stuck jobs (`requeue`, `reap`: textlstm/ops/recovery.py) and delete old finished ones
(`purge`: textlstm/ops/retention.py)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from textlstm.cli.results import format_table
from textlstm.store.models import FINISHED_STATUSES, JOB_STATUSES


def _fmt_time(value: object) -> str | None:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else None  # type: ignore[attr-defined]


@click.group()
def jobs() -> None:
    """List classification jobs and show their progress."""


@jobs.command("list")
@click.option("--status", type=click.Choice(JOB_STATUSES), default=None, help="Only this status.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per job (JSON Lines).")
def list_(status: str | None, limit: int, as_json: bool) -> None:
    """Most recently submitted jobs first."""
    from textlstm.settings import get_settings
    from textlstm.store.db import session_scope
    from textlstm.store.jobs import list_jobs

    with session_scope(get_settings().database_url) as session:
        found = list_jobs(session=session, status=status, limit=limit)
        if as_json:
            # One line per job, so a script can stream it (`| jq`); no jobs prints nothing.
            for j in found:
                click.echo(json.dumps(_job_doc(j), ensure_ascii=False))
            return
        rows = [
            (
                j.id,
                j.status,
                f"{j.done_count}/{j.expected_count}",
                j.error_count,
                j.model_ref,
                _fmt_time(j.submitted_at),
            )
            for j in found
        ]
    if not rows:
        click.echo("no jobs" + (f" with status {status}" if status else ""))
        return
    click.echo(format_table(("job", "status", "done", "errors", "model", "submitted"), rows))


def _job_doc(job: Any) -> dict[str, Any]:
    """`jobs show --json`'s document from a job row, less the resolved model (a list is one
    query, so no model resolution)."""
    from textlstm.client.jobs import status_from_row

    doc = status_from_row(job, None).to_json()
    del doc["model"]
    return doc


@jobs.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def show(job_id: str, as_json: bool) -> None:
    """Progress counts, model version and timings of JOB_ID."""
    from textlstm.client import Client

    client = Client()
    st = client.status(job_id)
    hook = client.webhook(job_id)
    if as_json:
        doc = st.to_json() | {"webhook": hook.to_json() if hook is not None else None}
        click.echo(json.dumps(doc, indent=2))
        return
    pct = 100.0 * st.done / st.expected
    elapsed = ""
    if st.started_at and st.finished_at:
        elapsed = f" in {(st.finished_at - st.started_at).total_seconds():.1f}s"
    lines = [
        f"job        {st.job_id}",
        f"status     {st.status}",
        f"progress   {st.done}/{st.expected} items ({pct:.0f}%): {st.ok} ok, {st.errors} errors"
        + (f" ({st.expired} expired: deadline passed)" if st.expired else "")
        + (f" ({st.cancelled} cancelled: never classified)" if st.cancelled else ""),
        f"model      {st.model_ref}" + (f" -> {st.model}" if st.model else ""),
        f"submitted  {_fmt_time(st.submitted_at)} UTC",
        f"started    {_fmt_time(st.started_at) or '-'}",
        f"finished   {_fmt_time(st.finished_at) or '-'}{elapsed}",
    ]
    if st.metadata:
        lines.append(f"metadata   {json.dumps(st.metadata, ensure_ascii=False)}")
    if hook is not None:
        why = f": {hook.last_error}" if hook.last_error else ""
        retry = f", next attempt {_fmt_time(hook.next_attempt_at)}" if hook.next_attempt_at else ""
        lines.append(
            f"webhook    {hook.state} after {hook.attempts} attempt(s) -> {hook.url}{why}{retry}"
        )
    click.echo("\n".join(lines))


@jobs.command()
@click.argument("job_id")
def cancel(job_id: str) -> None:
    """Cancel JOB_ID: its items not yet classified never will be.

    They are stored as `cancelled`, the rows already stored stay, and the job ends
    `cancelled`; workers ack its remaining messages without running the model (they learn of
    it within TEXTLSTM_WORKER_CANCEL_REFRESH_MS). Safe to repeat: a job already final is left
    as it is (exit status 0). Exit status 1 for an unknown job, or when the database was
    updated but the broker could not be told (run it again).
    """
    from textlstm.client import Client

    r = Client().cancel(job_id)
    if r.changed:
        click.echo(
            f"job {r.job_id}: cancelled ({r.previous} before); {r.cancelled} of {r.expected} "
            f"item(s) stored as cancelled, {r.ok} classified item(s) kept"
        )
    elif r.status == "cancelled":
        click.echo(f"job {r.job_id}: already cancelled; nothing to do")
    else:
        click.echo(f"job {r.job_id}: already finished ({r.status}); nothing to cancel")


def _requeue_line(r: object) -> str:
    from textlstm.ops.recovery import RequeueReport

    assert isinstance(r, RequeueReport)
    if not r.missing:
        return f"job {r.job_id}: {r.status}, every item has a row; nothing to requeue"
    parts = [f"job {r.job_id}: {r.status}, {r.missing} of {r.expected} item(s) have no row"]
    if r.waiting:
        parts.append(f"{r.waiting} waiting in a queue (left alone)")
    if r.from_broker:
        parts.append(f"{r.from_broker} re-sent from unacked broker copies")
    if r.from_input:
        parts.append(f"{r.from_input} re-sent from --input")
    if r.lost:
        shown = ", ".join(map(str, r.lost[:10])) + (" …" if len(r.lost) > 10 else "")
        if r.amqp:
            parts.append(
                f"{len(r.lost)} in no queue (RabbitMQ shows no client the messages delivered to "
                "a worker and not acked, and redelivers them itself when that worker's "
                f"connection closes; pass --input to re-send them): {shown}"
            )
        else:
            parts.append(f"{len(r.lost)} lost (no copy in the broker; pass --input): {shown}")
    return "; ".join(parts)


def _read_input(path: object, text_column: str) -> list[str]:
    from textlstm.training.datasets import read_texts

    return [ex.text for ex in read_texts(path, text_column=text_column, label_column=None).examples]


@jobs.command()
@click.argument("job_id")
@click.option(
    "--input",
    "input_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="The file the job was submitted from: texts of items lost from the broker.",
)
@click.option("--text-column", default="text", show_default=True, help="For --input.")
@click.option("--dry-run", is_flag=True, help="Report what would be sent; send nothing.")
def requeue(job_id: str, input_file: str | None, text_column: str, dry_run: bool) -> None:
    """Re-enqueue the items of JOB_ID that have no row yet (safe to repeat).

    Items still waiting in a queue are left alone; items delivered to a worker but never acked
    are sent again from the broker's copy; items found nowhere are taken from --input (the
    producer's file, numbered as `submit` numbers it) or reported as lost. Exit status 1 when
    some items are lost.

    On amqp:// (RabbitMQ) the waiting messages are read and put back unacked; there are no
    unacked copies to re-send (RabbitMQ redelivers a worker's unacked messages itself when
    its connection closes), so items in no queue come from --input or are reported.
    """
    from textlstm.ops.recovery import requeue_job
    from textlstm.settings import get_settings
    from textlstm.wire.messages import parse_job_id

    texts = _read_input(input_file, text_column) if input_file else None
    report = requeue_job(
        parse_job_id(job_id), settings=get_settings(), input_texts=texts, dry_run=dry_run
    )
    click.echo(_requeue_line(report) + (" (dry run: nothing sent)" if dry_run else ""))
    if report.lost:
        raise SystemExit(1)


@jobs.command()
@click.option(
    "--older-than",
    default="15m",
    show_default=True,
    help="No item stored for this long (90s, 15m, 2h, 1d).",
)
@click.option("--requeue", "do_requeue", is_flag=True, help="Requeue their missing items.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per stuck job.")
def reap(older_than: str, do_requeue: bool, as_json: bool) -> None:
    """Find jobs stuck in queued/running (no progress for --older-than) and report, or with
    --requeue re-enqueue, their missing items (on amqp://: see `jobs requeue`)."""
    from datetime import UTC

    from textlstm.client.publisher import broker_answers
    from textlstm.ops.recovery import parse_duration, requeue_job
    from textlstm.settings import get_settings
    from textlstm.store.db import session_scope
    from textlstm.store.jobs import stuck_jobs

    settings = get_settings()
    broker_answers(settings)  # a wrong broker setting is one line now, stuck jobs or none
    with session_scope(settings.database_url) as session:
        found = stuck_jobs(
            session=session, older_than=parse_duration(older_than), now=datetime.now(UTC)
        )
    if not found:
        click.echo(f"no job without progress for {older_than}")
        return
    for job in found:
        r = requeue_job(job.job_id, settings=settings, dry_run=not do_requeue)
        if as_json:
            doc = {
                "job_id": str(job.job_id),
                "status": job.status,
                "done": job.done,
                "expected": job.expected,
                "last_activity": job.last_activity.isoformat(),
                "missing": r.missing,
                "waiting": r.waiting,
                # null on amqp://: RabbitMQ redelivers unacked messages itself
                "unacked": None if r.amqp else r.from_broker,
                "lost": len(r.lost),
                "requeued": r.sent if do_requeue else 0,
            }
            click.echo(json.dumps(doc))
        else:
            idle = f"idle since {_fmt_time(job.last_activity)} UTC"
            click.echo(_requeue_line(r) + f" [{idle}]" + ("" if do_requeue else " (report only)"))


@jobs.command()
@click.option(
    "--older-than",
    required=True,
    help="Finished longer ago than this (30d, 12h, 90m), or before this date (2026-11-01, UTC).",
)
@click.option(
    "--status",
    "statuses",
    default=None,
    help="Only these final statuses, comma-separated (default: every final status: "
    + ", ".join(FINISHED_STATUSES)
    + ").",
)
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option(
    "--batch-rows",
    type=click.IntRange(1, 1_000_000),
    default=None,
    help="Most prediction rows per transaction [default: TEXTLSTM_RETENTION_BATCH_ROWS, 5000].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def purge(
    older_than: str, statuses: str | None, dry_run: bool, batch_rows: int | None, as_json: bool
) -> None:
    """Delete finished jobs older than --older-than, with their predictions.

    Age counts from when a job finished. Queued and running jobs are never deleted. Rows go
    in short transactions of at most --batch-rows predictions each, so workers keep writing
    meanwhile; an interrupted purge is finished by the next one. Workers can do this
    themselves: TEXTLSTM_RETENTION_PURGE_AFTER (docs/operations.md, Retention).
    """
    from datetime import UTC

    from textlstm.ops.retention import parse_cutoff, parse_statuses, purge_database
    from textlstm.settings import get_settings

    cutoff = parse_cutoff(older_than, now=datetime.now(UTC))
    report = purge_database(
        get_settings(),
        cutoff=cutoff,
        statuses=parse_statuses(statuses),
        batch_rows=batch_rows,
        dry_run=dry_run,
    )
    click.echo(json.dumps(report.as_dict()) if as_json else report.line())
