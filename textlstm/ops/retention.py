"""Retention: delete finished jobs, and their predictions, once they are older than a cutoff.

Used by `textlstm-admin jobs purge` and, with TEXTLSTM_RETENTION_PURGE_AFTER set, by the worker
fleet itself (worker/retention.py calls :func:`purge_if_due`).

Why in bounded batches: the predictions table is the big one (a job may hold a million rows),
and one `DELETE ... WHERE job finished before X` would hold its row locks and write its whole
WAL in one transaction, for minutes, while workers commit a micro-batch every few
milliseconds. Here each transaction deletes at most `batch_rows` prediction rows (several
small jobs together, or one range of a big job's item indexes) and commits, and the job row
goes with the last of its rows. A purge that is stopped half-way leaves whole jobs, or one job
with part of its rows gone, which the next purge finishes; it never touches a job that is not
final (store/retention.py re-checks that in every statement). A message for a purged job that
arrived afterwards would create the job afresh; only a redelivery could, and redeliveries come
within the visibility timeout (minutes), long before any sensible retention period ends.

Why a Redis lease and no Celery beat for the periodic purge: beat is one more process to
deploy, and it must run exactly once per deployment (two beats purge twice as often, none
never). Every worker process can instead try to take a lease (`SET NX` with the interval as
expiry) now and then; the one that gets it purges and the lease, left to expire, keeps the
others away for one interval. Nothing new to run; a dead worker's lease simply runs out.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from textlstm.durations import parse_duration
from textlstm.errors import ValidationError
from textlstm.settings import Settings
from textlstm.store.db import make_engine, make_session_factory, translate_db_errors
from textlstm.store.models import FINISHED_STATUSES
from textlstm.store.retention import (
    Candidate,
    delete_job_rows,
    delete_jobs,
    purge_candidates,
    purge_totals,
)
from textlstm.wire.redis_layout import broker_client, retention_lease_key

log = logging.getLogger(__name__)

#: Most jobs deleted in one transaction (many one-text jobs): bounds the IN list and the locks.
MAX_JOBS_PER_TRANSACTION = 1000
#: Jobs read per candidate query (one short read-only transaction).
SCAN_JOBS = 2000


def parse_statuses(text: str | None) -> tuple[str, ...]:
    """`done,partial` -> ("done", "partial"); None or empty = every final status. Only final
    statuses (models.FINISHED_STATUSES) are accepted: a queued or running job is never purged."""
    if text is None or not text.strip():
        return FINISHED_STATUSES
    wanted = [s.strip().lower() for s in text.split(",") if s.strip()]
    bad = [s for s in wanted if s not in FINISHED_STATUSES]
    if bad:
        raise ValidationError(
            f"cannot purge jobs with status {', '.join(bad)}: only finished jobs are purged "
            f"({', '.join(FINISHED_STATUSES)})"
        )
    return tuple(dict.fromkeys(wanted))


def parse_cutoff(text: str, *, now: datetime) -> datetime:
    """`--older-than`: a duration (`30d`, `12h`, `90m`) back from `now`, or an ISO date or
    time (`2026-11-01`, `2026-11-01T12:00`, UTC unless it names a zone) -> the UTC cutoff."""
    value = text.strip()
    try:
        return now - parse_duration(value)
    except ValidationError:
        pass
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(
            f"--older-than {text!r} is neither a duration like 30d, 12h, 90m nor a date like "
            "2026-11-01"
        ) from None
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    if when > now:
        raise ValidationError(f"--older-than {text!r} is in the future")
    return when


@dataclass
class PurgeReport:
    """What one purge did (or, with dry_run, would do). Times in seconds."""

    cutoff: datetime
    statuses: tuple[str, ...]
    dry_run: bool
    jobs: int = 0
    predictions: int = 0
    transactions: int = 0
    seconds: float = 0.0
    #: The longest single write transaction: how long any row lock was held.
    max_transaction_s: float = 0.0
    #: Purgeable jobs left alone: locked by another purge, or no longer purgeable when locked.
    skipped: int = 0
    stopped: bool = False
    transaction_s: list[float] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("transaction_s")
        doc["cutoff"] = self.cutoff.isoformat()
        doc["statuses"] = list(self.statuses)
        doc["seconds"] = round(self.seconds, 3)
        doc["max_transaction_s"] = round(self.max_transaction_s, 4)
        return doc

    def line(self) -> str:
        """The one-line summary `jobs purge` prints and the worker logs."""
        before = self.cutoff.strftime("%Y-%m-%d %H:%M:%S")
        what = (
            f"{self.jobs:,} job(s) and {self.predictions:,} prediction(s) "
            f"({', '.join(self.statuses)}) finished before {before} UTC"
        )
        if self.dry_run:
            return f"would purge {what} (dry run: nothing deleted)"
        out = (
            f"purged {what} in {self.seconds:.1f}s, {self.transactions} transaction(s), "
            f"longest {self.max_transaction_s:.3f}s"
        )
        if self.skipped:
            out += f"; {self.skipped} job(s) left (busy or no longer purgeable)"
        return out + ("; stopped before the end" if self.stopped else "")


def _groups(candidates: Sequence[Candidate], batch_rows: int) -> Iterator[list[Candidate]]:
    """Consecutive candidates whose rows add up to at most batch_rows (a big job alone)."""
    group: list[Candidate] = []
    rows = 0
    for c in candidates:
        if group and (rows + c.rows > batch_rows or len(group) >= MAX_JOBS_PER_TRANSACTION):
            yield group
            group, rows = [], 0
        group.append(c)
        rows += c.rows
    if group:
        yield group


def purge(
    *,
    session_factory: sessionmaker[Session],
    cutoff: datetime,
    statuses: Sequence[str] = FINISHED_STATUSES,
    batch_rows: int = 5000,
    dry_run: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
) -> PurgeReport:
    """Delete the jobs in `statuses` finished before `cutoff`, and their predictions, in
    transactions of at most `batch_rows` prediction rows, committing between them.

    Safe to run while workers write and alongside another purge; `should_stop` is asked
    between transactions (a worker shutting down stops after the current one).
    """
    statuses = tuple(statuses)
    bad = [s for s in statuses if s not in FINISHED_STATUSES]
    if bad or not statuses:
        raise ValidationError(f"only finished jobs are purged, not {bad or 'no status'}")
    if batch_rows < 1:
        raise ValidationError("batch_rows must be at least 1")
    report = PurgeReport(cutoff=cutoff, statuses=statuses, dry_run=dry_run)
    started = time.perf_counter()
    if dry_run:
        with session_factory() as s:
            report.jobs, report.predictions = purge_totals(
                session=s, statuses=statuses, cutoff=cutoff
            )
        report.seconds = time.perf_counter() - started
        return report

    def write(step: Callable[[Session], Any]) -> Any:
        t0 = time.perf_counter()
        with session_factory.begin() as s:
            out = step(s)
        took = time.perf_counter() - t0
        report.transactions += 1
        report.transaction_s.append(took)
        report.max_transaction_s = max(report.max_transaction_s, took)
        return out

    for unstamped in (False, True):
        after: tuple[datetime, Any] | None = None
        while not report.stopped:
            with session_factory() as s:
                batch = purge_candidates(
                    session=s, statuses=statuses, cutoff=cutoff, after=after,
                    limit=SCAN_JOBS, unstamped=unstamped,
                )  # fmt: skip
            if not batch:
                break
            after = (batch[-1].finished_at, batch[-1].job_id)
            for group in _groups(batch, batch_rows):
                if should_stop():
                    report.stopped = True
                    break
                if len(group) == 1 and group[0].rows > batch_rows:
                    _purge_big(group[0], write, report, cutoff, statuses, batch_rows, should_stop)
                    if report.stopped:
                        break
                    continue
                ids = [c.job_id for c in group]
                jobs, rows = write(
                    lambda s, ids=ids: delete_jobs(
                        session=s, job_ids=ids, statuses=statuses, cutoff=cutoff
                    )
                )
                report.jobs += jobs
                report.predictions += rows
                report.skipped += len(group) - jobs
    report.seconds = time.perf_counter() - started
    return report


def _purge_big(
    job: Candidate,
    write: Callable[[Callable[[Session], Any]], Any],
    report: PurgeReport,
    cutoff: datetime,
    statuses: tuple[str, ...],
    batch_rows: int,
    should_stop: Callable[[], bool],
) -> None:
    """One job with more rows than a transaction may delete: its item-index ranges in turn
    (primary-key ranges: no scan), then the job row with whatever is left."""
    # A final job holds one row per item (its counters reached its total), indexes 0 to
    # rows-1; ranges of batch_rows indexes delete at most batch_rows rows each, and the last
    # transaction removes anything outside them with the job row.
    start = 0
    while start < job.rows:
        if should_stop():
            report.stopped = True
            return
        stop = start + batch_rows
        deleted = write(
            lambda s, a=start, b=stop: delete_job_rows(
                session=s, job_id=job.job_id, start=a, stop=b, statuses=statuses, cutoff=cutoff
            )
        )
        if deleted is None:  # busy, or no longer purgeable: leave it
            report.skipped += 1
            return
        report.predictions += deleted
        start = stop
    jobs, rows = write(
        lambda s: delete_jobs(session=s, job_ids=[job.job_id], statuses=statuses, cutoff=cutoff)
    )
    report.jobs += jobs
    report.predictions += rows
    report.skipped += 1 - jobs


def purge_database(
    settings: Settings,
    *,
    cutoff: datetime,
    statuses: Sequence[str] = FINISHED_STATUSES,
    batch_rows: int | None = None,
    dry_run: bool = False,
) -> PurgeReport:
    """:func:`purge` on the database of `settings`, with an engine of its own (disposed after)
    and database errors as one StoreError line: what `jobs purge` runs, for scripts too."""
    engine = make_engine(
        settings.database_url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms
    )
    try:
        with translate_db_errors(settings.database_url):
            return purge(
                session_factory=make_session_factory(engine),
                cutoff=cutoff,
                statuses=statuses,
                batch_rows=batch_rows or settings.retention_batch_rows,
                dry_run=dry_run,
            )
    finally:
        engine.dispose()


def purge_if_due(
    settings: Settings,
    *,
    session_factory: sessionmaker[Session],
    should_stop: Callable[[], bool] = lambda: False,
    now: datetime | None = None,
) -> PurgeReport | None:
    """The worker fleet's periodic purge: if TEXTLSTM_RETENTION_PURGE_AFTER is set and this
    process takes the fleet's lease, purge every final status older than it; else None.

    The lease (`<queue>.retention-lease`, expiring after the interval) is never released:
    left to expire, it spaces purges one interval apart across the fleet. A purge that runs
    longer than the interval may meet another one; that is safe (they skip each other's locked
    jobs), only wasteful.
    """
    after = settings.retention_purge_after
    if after is None:
        return None
    client = broker_client(settings)
    try:
        token = secrets.token_hex(8)
        ttl_ms = max(1, int(settings.retention_purge_interval_s * 1000))
        if not client.set(retention_lease_key(settings.queue), token, nx=True, px=ttl_ms):
            return None
    finally:
        client.close()
    cutoff = (now or datetime.now(UTC)) - after
    report = purge(
        session_factory=session_factory,
        cutoff=cutoff,
        batch_rows=settings.retention_batch_rows,
        should_stop=should_stop,
    )
    if report.jobs or report.skipped or report.stopped:
        log.info("retention: %s", report.line())
    return report
