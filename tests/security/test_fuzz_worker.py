"""Fuzz a real worker with raw entries pushed straight onto its Redis list (issue 14, item 5).

Hypothesis generates valid classify tasks in the exact kombu/Celery format and mutations of
every part of them (tests/security/fuzz_entries.py), a few hundred in all, pushed beside each
other. Afterwards:
- the worker is the same process: it never died or restarted;
- every valid message's items have exactly one row each, and its job is done;
- every other message was either taken (its job has rows: predictions, or error rows with a
  reason) or is on the dead-letter list with a reason;
- nothing is left queued, unacked or counted as delivered.

`TEXTLSTM_FUZZ_EXAMPLES` and `TEXTLSTM_FUZZ_CASES` make it longer (the 20,000-message run in
bench/results/fuzz_worker.md); `TEXTLSTM_FUZZ_REPORT` writes a summary there.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.jobs import assert_exactly_once
from tests.fixtures.workers import Fleet
from tests.security.fuzz_entries import Case, cases
from textlstm.testing.processes import paused
from textlstm.testing.redis_server import OwnRedis
from textlstm.wire.deadletters import DeadLetter, dead_letter_key

EXAMPLES = int(os.environ.get("TEXTLSTM_FUZZ_EXAMPLES", "4"))
CASES = int(os.environ.get("TEXTLSTM_FUZZ_CASES", "80"))
REPORT = os.environ.get("TEXTLSTM_FUZZ_REPORT")


def rows_by_job(session_factory: sessionmaker[Session]) -> dict[str, tuple[int, int]]:
    """job id -> (rows, error rows with a reason)."""
    from textlstm.store.models import Prediction

    with session_factory() as s:
        got = s.execute(
            select(
                Prediction.job_id,
                func.count(),
                func.count(Prediction.error),
            ).group_by(Prediction.job_id)
        ).all()
    return {str(j): (n, e) for j, n, e in got}


def quiet(redis: Any, queue: str, session_factory: sessionmaker[Session], timeout: float) -> None:
    """Until nothing is queued or unacked and the tables and the dead-letter list stop
    changing for a second and a half."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        state = (
            redis.llen(queue),
            redis.hlen("unacked"),
            redis.llen(dead_letter_key(queue)),
            sum(n for n, _ in rows_by_job(session_factory).values()),
        )
        if state != last:
            last, since = state, time.monotonic()
        elif state[:2] == (0, 0) and time.monotonic() - since > 1.5:
            return
        time.sleep(0.2)
    raise AssertionError(f"the worker did not settle: {last}")


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_fuzzed_raw_entries_never_stop_the_worker_and_each_is_stored_or_dead_lettered(
    own_fleet: tuple[Any, Fleet], own_redis: OwnRedis, session_factory: sessionmaker[Session]
) -> None:
    conf, fleet = own_fleet
    queue = conf.queue
    redis = own_redis.client()
    tally: Counter[str] = Counter()
    started = time.monotonic()
    try:
        w = fleet.start("--batch-max-items", "512")
        assert w.proc is not None
        pid = w.proc.pid

        @settings(
            max_examples=EXAMPLES,
            phases=[Phase.generate],  # no shrinking: every example costs a worker round
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(batch=st.lists(cases(queue), min_size=CASES, max_size=CASES))
        def run(batch: list[Case]) -> None:
            with paused(w):  # all pushed before the worker takes any: one pop holds many
                redis.lpush(queue, *(c.raw for c in batch))
            quiet(redis, queue, session_factory, timeout=120 + CASES / 20)
            check(batch)

        def check(batch: list[Case]) -> None:
            records = [DeadLetter.from_json(r) for r in redis.lrange(dead_letter_key(queue), 0, -1)]
            ids = {r.id for r in records}
            jobs_dead = {r.readable_job_id() for r in records}
            entries = {r.entry for r in records}
            rows = rows_by_job(session_factory)
            valid = {uuid.UUID(c.job_id): c.texts for c in batch if c.valid and c.job_id}
            assert_exactly_once(session_factory, valid)
            for c in batch:
                tally["valid" if c.valid else "mutated"] += 1
                if c.valid:
                    continue
                if c.job_id in rows:
                    tally["mutated: its job has rows (predictions or error rows)"] += 1
                elif (
                    c.tag in ids
                    or c.job_id in jobs_dead
                    or c.raw.decode(errors="replace") in entries
                ):
                    tally["mutated: no rows, on the dead-letter list"] += 1
                else:
                    raise AssertionError(f"neither stored nor dead-lettered: {c.raw[:400]!r}")
            tally["dead-letter records (all stages)"] = len(records)
            for r in records:
                assert r.reason and "\n" not in r.reason
            assert redis.llen(queue) == 0 and redis.hlen("unacked") == 0
            assert redis.hlen("unacked_deliveries") == 0
            assert w.alive() and w.proc is not None and w.proc.pid == pid
            log = w.log()
            assert "exited with" not in log and "Unrecoverable error" not in log, log[-3000:]

        run()
        stages = Counter(
            DeadLetter.from_json(r).stage for r in redis.lrange(dead_letter_key(queue), 0, -1)
        )
        tally.update({f"stage {k}": v for k, v in stages.items()})
        if REPORT:
            write_report(Path(REPORT), tally, time.monotonic() - started, w.log(), len(w.batches()))
    finally:
        redis.close()


def write_report(path: Path, tally: Counter[str], seconds: float, log: str, batches: int) -> None:
    from datetime import UTC, datetime

    lines = [
        "# Fuzzing a real worker with raw Redis entries",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC: `TEXTLSTM_FUZZ_EXAMPLES={EXAMPLES} "
        f"TEXTLSTM_FUZZ_CASES={CASES} pytest tests/security/test_fuzz_worker.py` "
        f"({EXAMPLES * CASES:,} messages, one worker process, PostgreSQL, {seconds:.0f} s).",
        "",
        "| what | count |",
        "|---|---:|",
        *(f"| {k} | {v:,} |" for k, v in sorted(tally.items())),
        "",
        "Every check held: the worker process never died or restarted; every valid message's "
        "items have exactly one row; every mutated message was stored (its job has rows) or "
        "is on the dead-letter list with a one-line reason; nothing was left queued, unacked "
        "or counted as delivered.",
        "",
        f"Worker log: {log.count('] rejected message '):,} body refusals, "
        f"{log.count('] dead-lettered a message'):,} envelope refusals, "
        f"{batches:,} micro-batches (its batch records).",
    ]
    path.write_text("\n".join(lines) + "\n")
    path.with_suffix(".json").write_text(json.dumps(dict(tally), indent=2) + "\n")
