"""Item 5, without a broker: priority and deadline in the message, the batcher's priority order,
and `expired` rows from `classify_batch` on SQLite and PostgreSQL with the real tiny model."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.serving import FAST, batch_of, message, rows
from textlstm.errors import ValidationError
from textlstm.serving.microbatch import Batcher
from textlstm.serving.models import ModelCache
from textlstm.serving.service import classify_batch
from textlstm.store.jobs import get_job
from textlstm.wire.messages import ClassifyMessage, Limits, build_messages, parse_message
from textlstm.wire.queues import consume_order, queue_for

NOW = datetime(2026, 11, 29, 15, 0, tzinfo=UTC)


def test_priority_queues_and_consume_order() -> None:
    assert consume_order("tl") == ["tl.high", "tl", "tl.bulk"]
    assert queue_for("tl", "normal") == "tl"
    with pytest.raises(ValidationError, match="priority must be one of"):
        queue_for("tl", "urgent")


def test_priority_and_deadline_round_trip_and_old_messages_still_parse() -> None:
    deadline = NOW + timedelta(seconds=30)
    (msg,) = build_messages(
        ["a"], job_id=uuid.uuid4(), model="m", limits=Limits(), priority="bulk", deadline=deadline
    )
    back = parse_message(msg.to_json(), limits=Limits())
    assert (back.priority, back.deadline) == ("bulk", deadline)
    old = {k: v for k, v in msg.to_json().items() if k not in ("priority", "deadline")}
    assert (
        parse_message(old, limits=Limits()).priority,
        parse_message(old, limits=Limits()).deadline,
    ) == ("normal", None)
    with pytest.raises(ValidationError, match="priority"):
        parse_message({**msg.to_json(), "priority": "asap"}, limits=Limits())
    with pytest.raises(ValidationError, match="deadline"):
        parse_message({**msg.to_json(), "deadline": "tomorrow"}, limits=Limits())
    with pytest.raises(ValidationError, match="timezone-aware"):
        build_messages(
            ["a"], job_id=uuid.uuid4(), model="m", limits=Limits(), deadline=datetime(2026, 1, 1)
        )
    assert back.expired(deadline + timedelta(seconds=1)) and not back.expired(deadline)


def _msg(priority: str, n: int = 2) -> ClassifyMessage:
    items = tuple(message([f"t{i}" for i in range(n)]).items)
    return ClassifyMessage(uuid.uuid4(), "m", n, items, priority=priority)


def test_batcher_cuts_high_priority_items_first() -> None:
    b = Batcher(max_items=4, max_tokens=10**6, max_wait_s=1.0, idle_s=0.01)
    bulk, normal, high = _msg("bulk", 3), _msg("normal", 3), _msg("high", 3)
    for t, m in enumerate((bulk, normal, high)):
        b.add(m, m.priority, now=t * 0.001)
    first = b.take(0.003)  # 9 items ≥ max 4: full
    assert first is not None
    assert [s.entry.message.priority for s in first.slices] == ["high", "normal"]
    assert len(first) == 4
    second = b.take(1.0, force=True)
    assert second is not None and [s.entry.message.priority for s in second.slices] == [
        "normal",
        "bulk",
    ]


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_items_past_their_deadline_are_stored_expired_and_the_job_says_so(
    session_factory: sessionmaker[Session],
    registered: dict,
    tmp_path: Path,
) -> None:
    models = ModelCache(session_factory=session_factory, cache_dir=tmp_path / "cache")
    late = message(["goal scored", "stock market"], total=4)
    late = ClassifyMessage(
        late.job_id, "topics", 4, late.items, submitted_at=NOW, deadline=NOW + timedelta(seconds=5)
    )
    live = message(["telescope", "league"], total=4, start=2, job=late.job_id)
    live = ClassifyMessage(live.job_id, "topics", 4, live.items, submitted_at=NOW)
    report = classify_batch(
        batch_of(late, live),
        models=models,
        session_factory=session_factory,
        retry=FAST,
        wall_clock=lambda: NOW + timedelta(seconds=7),
    )
    assert (report.items, report.ok, report.errors, report.expired) == (4, 2, 2, 2)
    assert report.queue_wait_s == (7.0, 7.0, 7.0, 7.0)
    stored = rows(session_factory, late.job_id)
    assert [r.status for r in stored] == ["expired", "expired", "ok", "ok"]
    assert "not started before the deadline" in stored[0].error and stored[0].label is None
    with session_factory() as s:
        job = get_job(session=s, job_id=late.job_id)
        assert (job.status, job.ok_count, job.error_count, job.expired_count) == (
            "partial",
            2,
            2,
            2,
        )

    # A job whose every item expired never loads a model and ends `expired`.
    gone = ClassifyMessage(uuid.uuid4(), "nosuch-model", 1, message(["x"]).items, deadline=NOW)
    report = classify_batch(
        batch_of(gone),
        models=models,
        session_factory=session_factory,
        retry=FAST,
        wall_clock=lambda: NOW + timedelta(seconds=1),
    )
    assert report.expired == 1 and report.model is None
    from textlstm.client.jobs import status_from_row

    with session_factory() as s:
        st = status_from_row(get_job(session=s, job_id=gone.job_id), None)
    assert (st.status, st.expired, st.finished) == ("expired", 1, True)
