"""Issue 14 item 4: validation that matches storage, on real PostgreSQL and SQLite.

Every field of the message schema is tried at its limit and just past it (textlstm/wire/limits.py
says where each limit comes from). At the limit the value is accepted by the worker's
validation (`parse_message`, `parse_body`) and, where a producer sets it, by the producer's
(`build_messages`); then it is stored through the producer's job record (`ensure_job`) and the
worker's write path (`classify_batch` → `save_batch`) and read back by `textlstm-admin jobs
show`, `jobs show --json`, `jobs list` and `results` (table, CSV, JSON lines). Just past the
limit it is a ValidationError naming the field. The storage-derived constants are checked
against the migrated schema of both databases.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Integer, String, inspect
from sqlalchemy.orm import Session, sessionmaker

from textlstm.cli import cli
from textlstm.errors import ValidationError
from textlstm.serving.microbatch import Batcher
from textlstm.serving.models import ModelCache
from textlstm.serving.retry import RetryPolicy
from textlstm.serving.service import classify_batch, record_rejection
from textlstm.store.jobs import ensure_job
from textlstm.store.models import Base
from textlstm.wire import limits as bounds
from textlstm.wire.messages import (
    ClassifyMessage,
    Limits,
    build_messages,
    check_metadata,
    parse_body,
    parse_message,
)
from textlstm.wire.refs import ModelRef, parse_model_ref
from textlstm.wire.salvage import salvage

FAST = RetryPolicy(initial_s=0.02, max_s=0.1)
TEXT_CHARS = 20_000
PARTS = 4
#: The widest limits the schema allows: a total and indices up to the Integer column.
LIMITS = Limits(max_text_chars=TEXT_CHARS, max_job_items=bounds.INT32_MAX, message_max_items=PARTS)
FAIL = "stored as an error by the limits test"

NAME = "n" * bounds.MODEL_NAME_CHARS
ALIAS = "a" * bounds.MODEL_ALIAS_CHARS
ASTRAL = "\U0001f600"  # one character, four UTF-8 bytes: lengths are counted in characters


def deep(levels: int) -> dict[str, Any]:
    """Metadata nested `levels` deep ({} is one level)."""
    doc: dict[str, Any] = {}
    for _ in range(levels - 1):
        doc = {"d": doc}
    return doc


def sized(n_bytes: int) -> dict[str, str]:
    """Metadata of exactly `n_bytes` as compact UTF-8 JSON, with multi-byte characters."""
    head = '{"k":"' + "é" * 10 + ASTRAL  # 6 + 20 + 4 bytes
    pad = n_bytes - len(head.encode()) - 2  # the closing quote and brace
    doc = {"k": "é" * 10 + ASTRAL + "x" * pad}
    assert len(json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()) == n_bytes
    return doc


def body(**changes: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "schema_version": 1,
        "job_id": str(uuid.uuid4()),
        "model": "topics",
        "total": 3,
        "items": [
            {"index": 0, "id": "a", "text": "one"},
            {"index": 1, "text": "two"},
            {"index": 2, "id": 7, "text": "three"},
        ],
        "metadata": {"who": "limits"},
        "submitted_at": "2026-12-04T12:00:00+00:00",
        "priority": "normal",
        "deadline": None,
    }
    b.update(changes)
    return b


def item(n: int, **fields: Any) -> Callable[[dict[str, Any]], None]:
    def change(b: dict[str, Any]) -> None:
        b["items"][n].update(fields)

    return change


def top(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda b: b.update(fields)


@dataclass(frozen=True)
class Case:
    """One field at its limit (`at`) and just past it (`past`, refused with `reason`)."""

    name: str
    at: Callable[[dict[str, Any]], None]
    past: Callable[[dict[str, Any]], None]
    reason: str
    #: build_messages keyword arguments at and past the limit (fields a producer sets).
    produce_at: dict[str, Any] = field(default_factory=dict)
    produce_past: dict[str, Any] | None = None


U = uuid.UUID("3f1c2a8e-5b7d-4c1e-9a0b-2f6d8e4c7a11")
TOP = bounds.TIMESTAMP_MAX - timedelta(microseconds=1)
WEST = timedelta(hours=-5)
EAST = timedelta(hours=5)


def iso(when: datetime, offset: timedelta) -> str:
    from datetime import timezone

    return when.astimezone(timezone(offset)).isoformat()


def aware(text: str) -> datetime:
    return datetime.fromisoformat(text)


LAST_IN_WEST = iso(TOP, WEST)  # 9998-12-31T18:59:59.999999-05:00
FIRST_OUT_WEST = iso(bounds.TIMESTAMP_MAX, WEST)  # 9998-12-31T19:00:00-05:00
EPOCH_EAST = iso(bounds.TIMESTAMP_MIN, EAST)  # 1970-01-01T05:00:00+05:00
BEFORE_EPOCH_EAST = iso(bounds.TIMESTAMP_MIN - timedelta(microseconds=1), EAST)

CASES = [
    Case(
        "job_id: longest spelling (urn:uuid:, 45 characters)",
        top(job_id=f"urn:uuid:{U}"),
        top(job_id=f"urn:uuid:{U}-"),  # uuid.UUID would drop the hyphen
        "is not a UUID",
        {"job_id": f"urn:uuid:{U}"},
        {"job_id": f"urn:uuid:{U}-"},
    ),
    Case(
        "job_id: ASCII only",
        top(job_id=str(U)),
        top(job_id="\u0663" * 32),  # Arabic-Indic digits: uuid.UUID reads them
        "is not a UUID",
    ),
    Case(
        "model: longest name and alias (97 characters)",
        top(model=f"{NAME}@{ALIAS}"),
        top(model=f"{NAME}n@{ALIAS}"),
        "message field 'model': invalid model name",
        {"model": f"{NAME}@{ALIAS}"},
        {"model": f"{NAME}@{ALIAS}a"},
    ),
    Case(
        "model: highest version (the Integer column)",
        top(model=f"{NAME}@{bounds.MODEL_VERSION_MAX}"),
        top(model=f"{NAME}@{bounds.MODEL_VERSION_MAX + 1}"),
        "a version is 1 to 2147483647",
        {"model": f"m@{bounds.MODEL_VERSION_MAX}"},
        {"model": "m@0"},
    ),
    Case(
        "model: ASCII version digits (the name@² defect)",
        top(model="m@9"),
        top(model="m@\u00b2"),
        "message field 'model': invalid model reference",
        {"model": "m@1"},
        {"model": "m@\u0663"},
    ),
    Case(
        "model: reference length (jobs.model_ref, the 165-character defect)",
        top(model="m@" + "1" * bounds.MODEL_VERSION_DIGITS),
        top(model="m@" + "0" * 162 + "1"),
        "message field 'model': model reference is 165 characters; the limit is 100",
        {"model": "m@" + "0" * 9 + "1"},
        {"model": "m@" + "0" * 162 + "1"},
    ),
    Case(
        "model: no trailing newline (fullmatch)",
        top(model="m@production"),
        top(model="m@production\n"),
        "message field 'model'",
        {"model": "m"},
        {"model": "m\n"},
    ),
    Case(
        "total: the Integer column (with TEXTLSTM_MAX_JOB_ITEMS at its maximum)",
        top(total=bounds.INT32_MAX),
        top(total=bounds.INT32_MAX + 1),
        "message field 'total': 2147483648 is outside 1..2147483647",
    ),
    Case(
        "total: at least one item",
        top(total=3),
        top(total=0),
        "message field 'total': 0 is outside 1..",
    ),
    Case(
        "items[].index: total - 1 (the Integer column)",
        lambda b: (b.update(total=bounds.INT32_MAX), item(2, index=bounds.INT32_MAX - 1)(b)),
        lambda b: (b.update(total=bounds.INT32_MAX), item(2, index=bounds.INT32_MAX)(b)),
        "message item 2: index 2147483647 is out of range",
    ),
    Case(
        "items[].index: not negative",
        item(0, index=0),
        item(0, index=-1),
        "message item 0: index -1 is out of range",
    ),
    Case(
        "items[].id: 256 characters (predictions.external_id), astral ones included",
        item(0, id=ASTRAL * 128 + "i" * 128),
        item(0, id=ASTRAL * 128 + "i" * 129),
        "item 0: id is 257 characters; the limit is 256",
        {"texts": [{"id": ASTRAL * 256, "text": "x"}]},
        {"texts": [{"id": ASTRAL * 257, "text": "x"}]},
    ),
    Case(
        "items[].id: integers whose decimal form is 256 characters",
        lambda b: (item(0, id=10**256 - 1)(b), item(1, id=-(10**255) + 1)(b)),
        item(0, id=10**256),
        "item 0: id is an integer of more than 256 characters",
        {"texts": [{"id": -(10**255) + 1, "text": "x"}]},
        {"texts": [{"id": -(10**255), "text": "x"}]},
    ),
    Case(
        "items[].id: an integer too long for str() (over 4,300 digits)",
        item(0, id=1),
        item(0, id=10**5000),
        "item 0: id is an integer of more than 256 characters",
        {"texts": [{"id": 1, "text": "x"}]},
        {"texts": [{"id": 10**5000, "text": "x"}]},
    ),
    Case(
        "items[].text: TEXTLSTM_MAX_TEXT_CHARS",
        item(1, text=ASTRAL * TEXT_CHARS),
        item(1, text=ASTRAL * (TEXT_CHARS + 1)),
        "item 1: text is 20001 characters; the limit is 20000",
        {"texts": ["x" * TEXT_CHARS]},
        {"texts": ["x" * (TEXT_CHARS + 1)]},
    ),
    Case(
        "metadata: 16,384 bytes of compact UTF-8 JSON",
        top(metadata=sized(bounds.METADATA_BYTES)),
        top(metadata=sized(bounds.METADATA_BYTES + 1)),
        "message field 'metadata': 16385 bytes as compact UTF-8 JSON, over 16384 bytes",
        {"metadata": sized(bounds.METADATA_BYTES)},
        {"metadata": sized(bounds.METADATA_BYTES + 1)},
    ),
    Case(
        "metadata: 32 levels deep",
        top(metadata=deep(bounds.METADATA_DEPTH)),
        top(metadata=deep(bounds.METADATA_DEPTH + 1)),
        "message field 'metadata': nested deeper than 32 levels; the limit is 32",
        {"metadata": {"list": [[[[{"x": [1]}]]]], **deep(bounds.METADATA_DEPTH - 1)}},
        {"metadata": {"list": [deep(bounds.METADATA_DEPTH)]}},
    ),
    Case(
        "metadata: the reported ~950 levels",
        top(metadata={"k": [1, {"v": None}], "s": "é"}),
        top(metadata=deep(950)),
        "nested deeper than 32 levels",
        {},
        {"metadata": deep(100_000)},  # json.dumps itself raises RecursionError
    ),
    Case(
        "metadata keys: any storable string (a long, non-ASCII one)",
        top(metadata={ASTRAL * 1000 + "\u202e": {"\t\n": 1}}),
        top(metadata={"ok": {"k\x00": 1}}),
        "metadata key contains a NUL character",
        {"metadata": {ASTRAL * 1000: {"\t\n": 1}}},
        {"metadata": {"ok": {"k\ud800": 1}}},
    ),
    Case(
        "metadata values: an integer of 4,300 digits, floats at the edges",
        top(metadata={"big": 10**4299, "f": 1.7976931348623157e308, "t": 5e-324}),
        top(metadata={"big": 10**4300}),  # what json cannot write (nor read back)
        "metadata is not JSON-serialisable",
    ),
    Case(
        "submitted_at: the last microsecond before 9999-01-01 UTC, west of UTC",
        top(submitted_at=LAST_IN_WEST),
        top(submitted_at=FIRST_OUT_WEST),
        "message field 'submitted_at': 9998-12-31T19:00:00-05:00 is outside",
        {"submitted_at": aware(LAST_IN_WEST)},
        {"submitted_at": aware(FIRST_OUT_WEST)},
    ),
    Case(
        "submitted_at: the reported year 9999 with a negative offset",
        top(submitted_at="9998-12-31T23:59:59.999999+00:00"),
        top(submitted_at="9999-12-31T23:00:00-05:00"),
        "message field 'submitted_at'",
        {},
        {"submitted_at": datetime(2026, 1, 1)},  # naive: the producer refuses it
    ),
    Case(
        "submitted_at: the Unix epoch, east of UTC",
        top(submitted_at=EPOCH_EAST),
        top(submitted_at=BEFORE_EPOCH_EAST),
        "message field 'submitted_at': 1970-01-01T04:59:59.999999+05:00 is outside",
        {"submitted_at": aware(EPOCH_EAST)},
        {"submitted_at": aware(BEFORE_EPOCH_EAST)},
    ),
    Case(
        "deadline: the top of the range (not expired)",
        top(deadline=LAST_IN_WEST),
        top(deadline=FIRST_OUT_WEST),
        "message field 'deadline'",
        {"deadline": aware(LAST_IN_WEST)},
        {"deadline": aware(FIRST_OUT_WEST)},
    ),
    Case(
        "deadline: the bottom of the range (stored as expired)",
        top(deadline=EPOCH_EAST),
        top(deadline=BEFORE_EPOCH_EAST),
        "message field 'deadline'",
        {"deadline": aware(EPOCH_EAST)},
        {"deadline": aware(BEFORE_EPOCH_EAST)},
    ),
    Case(
        "priority: one of high, normal, bulk",
        top(priority="bulk"),
        top(priority="HIGH"),
        "priority must be one of high, normal, bulk, got 'HIGH'",
        {"priority": "high"},
        {"priority": "urgent"},
    ),
    Case(
        "schema_version: the integer 1",
        top(schema_version=1),
        top(schema_version=True),
        "unsupported message schema_version True",
    ),
    Case(
        "schema_version: not 1.0 either",
        top(schema_version=1),
        top(schema_version=1.0),
        "unsupported message schema_version 1.0",
    ),
]

#: Only a case whose value goes in the job row or the rows is worth a database round trip.
STORED = [c for c in CASES if "schema_version" not in c.name and "priority" not in c.name]


def at_limit(case: Case) -> dict[str, Any]:
    b = body()
    case.at(b)
    return b


def past_limit(case: Case) -> dict[str, Any]:
    b = body()
    case.past(b)
    return b


# -- the walk: just past each limit ----------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_just_past_the_limit_is_refused_naming_the_field(case: Case) -> None:
    raw = past_limit(case)
    with pytest.raises(ValidationError) as exc:
        parse_message(raw, limits=LIMITS)
    reason = str(exc.value)
    assert case.reason in reason
    assert "\n" not in reason and len(reason) < 300, "one short line, not the payload"
    # In an envelope the part is refused alone, with the same reason; its neighbour is kept.
    neighbour = body()
    parsed = parse_body({"schema_version": 2, "messages": [neighbour, raw]}, limits=LIMITS)
    assert [str(m.job_id) for m in parsed.messages] == [neighbour["job_id"]]
    ((part, why),) = parsed.rejected
    assert part is raw and str(why) == f"envelope part 1: {reason}"


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.produce_past is not None], ids=lambda c: c.name
)
def test_the_producer_refuses_just_past_the_limit(case: Case) -> None:
    assert case.produce_past is not None
    with pytest.raises(ValidationError) as exc:
        produce(**case.produce_past)
    assert "\n" not in str(exc.value) and len(str(exc.value)) < 300


def produce(**kwargs: Any) -> list[ClassifyMessage]:
    args: dict[str, Any] = {
        "texts": ["one", {"id": "b", "text": "two"}],
        "job_id": uuid.uuid4(),
        "model": "topics",
        "metadata": {"who": "producer"},
        "limits": LIMITS,
        **kwargs,
    }
    return build_messages(args.pop("texts"), **args)


def test_envelope_part_count_at_and_past_the_limit() -> None:
    parts = [body() for _ in range(PARTS)]
    parsed = parse_body({"schema_version": 2, "messages": parts}, limits=LIMITS)
    assert len(parsed.messages) == PARTS and not parsed.rejected
    with pytest.raises(ValidationError, match="envelope carries 5 messages; the limit is 4"):
        parse_body({"schema_version": 2, "messages": [*parts, body()]}, limits=LIMITS)


def test_job_item_count_at_and_past_the_limit() -> None:
    small = Limits(max_job_items=3)
    assert produce(texts=["a", "b", "c"], limits=small)[0].total == 3
    with pytest.raises(ValidationError, match="more than 3 items"):
        produce(texts=["a", "b", "c", "d"], limits=small)


def test_max_job_items_cannot_exceed_the_integer_column() -> None:
    from textlstm.errors import SettingsError
    from textlstm.settings import Settings

    assert Settings(max_job_items=bounds.INT32_MAX).max_job_items == bounds.INT32_MAX
    with pytest.raises(SettingsError, match="TEXTLSTM_MAX_JOB_ITEMS: must be at most 2147483647"):
        Settings(max_job_items=bounds.INT32_MAX + 1)
    with pytest.raises(ValueError, match="max_job_items"):
        Limits(max_job_items=bounds.INT32_MAX + 1)


def test_expires_that_overflows_datetime_is_a_validation_error() -> None:
    from textlstm.client import prepare_job
    from textlstm.settings import Settings

    s = Settings(default_model="topics")
    common: dict[str, Any] = {
        "model": None,
        "metadata": None,
        "job_id": None,
        "priority": "normal",
        "deadline": None,
    }
    assert prepare_job(s, ["a"], expires=60, **common)[0].deadline is not None
    for bad in (1e300, float("nan"), float("inf")):
        with pytest.raises(ValidationError, match="expires"):
            prepare_job(s, ["a"], expires=bad, **common)
    past_the_range = datetime(9999, 6, 1, tzinfo=UTC) - datetime.now(UTC)
    with pytest.raises(ValidationError, match="message field 'deadline'"):
        prepare_job(s, ["a"], expires=past_the_range, **common)


# -- the walk: at each limit, through storage and every admin command -------------------------


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def store(factory: sessionmaker[Session], tmp_path: Path, *messages: ClassifyMessage) -> None:
    """The worker's write path: one micro-batch per model, every item an error row (no model
    is loaded; the reason and the columns of the rows are what the limits are about)."""
    models = ModelCache(session_factory=factory, cache_dir=tmp_path / "cache", refresh_s=5.0)
    batcher = Batcher(max_items=10_000, max_tokens=10**9, max_wait_s=0.0)
    for m in messages:
        batcher.add(m, None, now=time.monotonic())
    while (batch := batcher.take(time.monotonic(), force=True)) is not None:
        report = classify_batch(
            batch, models=models, session_factory=factory, retry=FAST, fail_reason=FAIL
        )
        assert not report.skipped_jobs


def record(factory: sessionmaker[Session], first: ClassifyMessage) -> None:
    """The producer's job record, as Client._record_job writes it (the ORM path)."""
    with factory.begin() as s:
        ensure_job(
            session=s,
            job_id=first.job_id,
            model_ref=first.model,
            expected=first.total,
            metadata=first.metadata,
            submitted_at=first.submitted_at,
        )


def same_json(a: Any, b: Any) -> bool:
    """Equal documents, numbers compared by value: PostgreSQL keeps JSONB numbers as exact
    decimals, so 1.7976931348623157e308 comes back as the integer 17976931348623157 * 10**292."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float) and a != b:
        return float(a) == float(b)
    return bool(a == b)


def read_back(runner: CliRunner, msg: ClassifyMessage) -> None:
    """Every admin command that reads a job shows it, and shows what was sent."""
    jid = str(msg.job_id)
    for args in (["jobs", "show", jid], ["jobs", "list"], ["results", jid]):
        out = runner.invoke(cli, args)
        assert out.exit_code == 0, (args, out.output, out.exception)
        assert jid in out.output or args[0] == "results"
    shown = runner.invoke(cli, ["jobs", "show", jid, "--json"])
    assert shown.exit_code == 0, shown.output
    doc = json.loads(shown.output)
    assert doc["model_ref"] == msg.model and doc["expected"] == msg.total
    assert same_json(doc["metadata"], msg.metadata)
    if msg.submitted_at is not None:
        assert datetime.fromisoformat(doc["submitted_at"]) == msg.submitted_at
    assert doc["ok"] + doc["errors"] == len(msg.items)
    rows = runner.invoke(cli, ["results", jid, "--format", "jsonl"])
    assert rows.exit_code == 0, rows.output
    got = [json.loads(line) for line in rows.output.splitlines() if line.startswith("{")]
    assert [(r["item_index"], r["external_id"]) for r in got] == [
        (i.index, i.id) for i in sorted(msg.items)
    ]
    expired = msg.deadline is not None and msg.deadline < datetime.now(UTC)
    assert all(r["status"] == ("expired" if expired else "error") for r in got)
    csv_out = runner.invoke(cli, ["results", jid, "--format", "csv"])
    assert csv_out.exit_code == 0, csv_out.output


@pytest.mark.parametrize("case", STORED, ids=lambda c: c.name)
def test_at_the_limit_the_worker_stores_it_and_every_command_reads_it(
    case: Case,
    settings_env: str,
    session_factory: sessionmaker[Session],
    runner: CliRunner,
    tmp_path: Path,
) -> None:
    raw = json.loads(json.dumps(at_limit(case)))  # what the worker decodes from the broker
    msg = parse_message(raw, limits=LIMITS)
    (same,) = parse_body({"schema_version": 2, "messages": [raw]}, limits=LIMITS).messages
    assert same == msg
    store(session_factory, tmp_path, msg)
    read_back(runner, msg)


@pytest.mark.parametrize("case", [c for c in STORED if c.produce_at], ids=lambda c: c.name)
def test_at_the_limit_the_producer_sends_it_and_it_is_stored_and_read(
    case: Case,
    settings_env: str,
    session_factory: sessionmaker[Session],
    runner: CliRunner,
    tmp_path: Path,
) -> None:
    msgs = produce(**case.produce_at)
    wire = [json.loads(json.dumps(m.to_json())) for m in msgs]  # kombu's JSON serializer
    back = [parse_message(w, limits=LIMITS) for w in wire]
    assert back == msgs, "the worker reads exactly what the producer sent"
    record(session_factory, msgs[0])
    store(session_factory, tmp_path, *back)
    read_back(runner, msgs[0])


def test_limits_match_the_migrated_schema(db_url: str) -> None:
    """The numbers in textlstm/wire/limits.py are the columns' (models.py and the real database)."""
    from textlstm.store.db import make_engine

    want: dict[tuple[str, str], int | None] = {
        ("jobs", "model_ref"): bounds.MODEL_REF_CHARS,
        ("predictions", "external_id"): bounds.EXTERNAL_ID_CHARS,
        ("predictions", "label"): bounds.LABEL_CHARS,
        ("model_versions", "name"): bounds.MODEL_NAME_CHARS,
        ("model_aliases", "name"): bounds.MODEL_NAME_CHARS,
        ("model_aliases", "alias"): bounds.MODEL_ALIAS_CHARS,
        ("jobs", "expected_count"): None,  # Integer: INT32_MAX
        ("predictions", "item_index"): None,
        ("model_versions", "version"): None,
        ("model_aliases", "version"): None,
    }
    engine = make_engine(db_url)
    try:
        reflected = inspect(engine)
        for (table, column), length in want.items():
            declared = Base.metadata.tables[table].c[column].type
            real = next(c for c in reflected.get_columns(table) if c["name"] == column)["type"]
            if length is None:
                assert type(declared) is Integer, (table, column, declared)
                assert type(real).__name__ == "INTEGER", (table, column, real)
            else:
                assert isinstance(declared, String) and declared.length == length
                assert real.length == length, (table, column, real)  # type: ignore[attr-defined]
    finally:
        engine.dispose()
    longest = f"{NAME}@{ALIAS}"
    assert len(longest) <= bounds.MODEL_REF_CHARS and bounds.MODEL_VERSION_MAX == 2**31 - 1
    assert len(str(bounds.EXTERNAL_ID_INT_MAX)) == bounds.EXTERNAL_ID_CHARS
    assert len(str(bounds.EXTERNAL_ID_INT_MIN)) == bounds.EXTERNAL_ID_CHARS


def test_salvage_of_values_past_every_limit_is_recorded_and_readable(
    settings_env: str, session_factory: sessionmaker[Session], runner: CliRunner
) -> None:
    """A refused message's error rows go to columns with the same limits: what `salvage`
    reads from it always fits (the model is cut to the column, so the job row exists)."""
    nested: list[Any] = []
    for _ in range(5000):
        nested = [nested]
    jid = uuid.uuid4()
    raw = body(
        job_id=str(jid),
        model="m@" + "0" * 162 + "1",
        total=4,
        items=[
            {"index": 0, "id": 10**5000, "text": "x"},
            {"index": 1, "id": "i" * 300, "text": "x"},
            {"index": 2, "id": nested, "text": "x"},
            {"index": bounds.INT32_MAX, "text": "x"},
        ],
    )
    with pytest.raises(ValidationError, match="reference is 165 characters") as exc:
        parse_message(raw, limits=LIMITS)
    found = salvage(raw)
    assert found.job_id == jid and found.model is not None
    assert len(found.model) == bounds.MODEL_REF_CHARS
    assert found.items == ((0, None), (1, "i" * 256), (2, None))
    assert salvage(body(job_id=nested, total=2**40)).job_id is None
    assert salvage(body(total=2**40)).total is None
    n = record_rejection(found, str(exc.value), session_factory=session_factory, retry=FAST)
    assert n == 3
    for args in (["jobs", "show", str(jid)], ["jobs", "list"], ["results", str(jid)]):
        out = runner.invoke(cli, args)
        assert out.exit_code == 0, (args, out.output)
    assert (
        "reference is 165 characters; the limit is 100"
        in runner.invoke(cli, ["results", str(jid), "--format", "jsonl"]).output
    )


# -- totality ---------------------------------------------------------------------------------


class Hostile(dict):  # type: ignore[type-arg]
    """A part whose lookups fail: what a validator bug looks like from the outside."""

    def __init__(self, fail_on: str = "job_id", version: int = 1) -> None:
        super().__init__()
        self.fail_on, self.version = fail_on, version

    def get(self, key: Any, default: Any = None) -> Any:
        if key == self.fail_on:
            raise RuntimeError("boom\nsecond line")
        return self.version if key == "schema_version" else default


def test_a_part_that_breaks_the_validator_is_refused_alone_with_a_reason() -> None:
    good = body()
    parsed = parse_body(
        {
            "schema_version": 2,
            "messages": [good, Hostile(), body(model="m@\u00b2"), Hostile("schema_version")],
        },
        limits=LIMITS,
    )
    assert [str(m.job_id) for m in parsed.messages] == [good["job_id"]]
    reasons = [str(why) for _, why in parsed.rejected]
    assert reasons[0] == "envelope part 1: could not be validated: RuntimeError: boom second line"
    assert reasons[1].startswith("envelope part 2: message field 'model': invalid model")
    assert reasons[2] == "envelope part 3: could not be validated: RuntimeError: boom second line"
    for whole in (Hostile(), Hostile("schema_version"), Hostile("messages", version=2)):
        with pytest.raises(ValidationError, match="could not be validated: RuntimeError"):
            parse_body(whole, limits=LIMITS)


def test_unreadable_values_never_break_the_reason() -> None:
    nested: list[Any] = []
    for _ in range(5000):
        nested = [nested]
    for key in ("job_id", "total", "schema_version", "priority", "submitted_at"):
        with pytest.raises(ValidationError) as exc:
            parse_message(body(**{key: nested}), limits=LIMITS)
        assert "a list" in str(exc.value) or "not a UUID" in str(exc.value)
    with pytest.raises(ValidationError, match="an integer of"):
        parse_message(body(priority=10**5000), limits=LIMITS)
    with pytest.raises(ValidationError, match="nested deeper than 32"):
        check_metadata({"deep": nested})


def test_celery_expires_header_follows_the_timestamp_rule() -> None:
    from worker.strategy import with_header_deadline

    class Msg:
        def __init__(self, expires: Any) -> None:
            self.headers = {"expires": expires}

    msg = parse_message(body(), limits=LIMITS)
    for bad in (FIRST_OUT_WEST, "9999-12-31T23:00:00-05:00", BEFORE_EPOCH_EAST, "soon", 12):
        assert with_header_deadline(msg, Msg(bad)) is msg  # ignored, never raises
    assert with_header_deadline(msg, Msg(LAST_IN_WEST)).deadline == aware(LAST_IN_WEST)
    naive = with_header_deadline(msg, Msg("2030-01-01T00:00:00")).deadline
    assert naive == datetime(2030, 1, 1, tzinfo=UTC)


refs = (
    st.text(max_size=120)
    | st.from_regex(
        r"[A-Za-z0-9][A-Za-z0-9._-]{0,70}(@[A-Za-z0-9._\-²٣]{0,40})?\n?", fullmatch=True
    )
    | st.builds(lambda n, v: f"{n}@{v}", st.sampled_from(["m", NAME]), st.integers(-5, 2**33))
)


@settings(max_examples=600, deadline=None)
@given(refs)
def test_model_ref_parsing_is_total_and_fits_the_columns(ref: str) -> None:
    try:
        parsed = parse_model_ref(ref)
    except ValidationError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert isinstance(parsed, ModelRef)
    assert len(ref) <= bounds.MODEL_REF_CHARS and ref.isascii() and "\n" not in ref
    assert len(str(parsed)) <= bounds.MODEL_REF_CHARS
    assert 1 <= len(parsed.name) <= bounds.MODEL_NAME_CHARS
    assert parsed.alias is None or 1 <= len(parsed.alias) <= bounds.MODEL_ALIAS_CHARS
    assert parsed.version is None or 1 <= parsed.version <= bounds.MODEL_VERSION_MAX
    assert parse_model_ref(str(parsed)) == parsed
