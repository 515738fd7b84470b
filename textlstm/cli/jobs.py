"""`textlstm-admin jobs`: list jobs and show one job's progress, model and timings."""

from __future__ import annotations

import json

import click

from textlstm.cli.results import format_table
from textlstm.store.models import JOB_STATUSES


def _fmt_time(value: object) -> str | None:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else None  # type: ignore[attr-defined]


@click.group()
def jobs() -> None:
    """List classification jobs and show their progress."""


@jobs.command("list")
@click.option("--status", type=click.Choice(JOB_STATUSES), default=None, help="Only this status.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
def list_(status: str | None, limit: int) -> None:
    """Most recently submitted jobs first."""
    from textlstm.settings import get_settings
    from textlstm.store import repository as repo
    from textlstm.store.db import session_scope

    with session_scope(get_settings().database_url) as session:
        found = repo.list_jobs(session=session, status=status, limit=limit)
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


@jobs.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def show(job_id: str, as_json: bool) -> None:
    """Progress counts, model version and timings of JOB_ID."""
    from textlstm.client import Client

    st = Client().status(job_id)
    if as_json:
        doc = {
            "job_id": str(st.job_id),
            "status": st.status,
            "model_ref": st.model_ref,
            "model": st.model,
            "expected": st.expected,
            "ok": st.ok,
            "errors": st.errors,
            "expired": st.expired,
            "submitted_at": st.submitted_at.isoformat(),
            "started_at": st.started_at.isoformat() if st.started_at else None,
            "finished_at": st.finished_at.isoformat() if st.finished_at else None,
            "metadata": st.metadata,
        }
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
        + (f" ({st.expired} expired: deadline passed)" if st.expired else ""),
        f"model      {st.model_ref}" + (f" -> {st.model}" if st.model else ""),
        f"submitted  {_fmt_time(st.submitted_at)} UTC",
        f"started    {_fmt_time(st.started_at) or '-'}",
        f"finished   {_fmt_time(st.finished_at) or '-'}{elapsed}",
    ]
    if st.metadata:
        lines.append(f"metadata   {json.dumps(st.metadata, ensure_ascii=False)}")
    click.echo("\n".join(lines))
