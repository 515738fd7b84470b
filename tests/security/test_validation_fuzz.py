"""Issue 6 item 2, pure part: every hostile body gets a ValidationError with a clear reason (never
another exception), and hypothesis fuzzes the message validator and the producer's validation.

The key property: whatever the producer accepts, the worker accepts after a JSON round trip,
and the result can be stored (no NUL or lone surrogate reaches PostgreSQL text/JSONB columns).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from textlstm.errors import ValidationError
from textlstm.wire.messages import Limits, build_messages, parse_message

LIMITS = Limits(max_text_chars=20_000, max_job_items=1_000_000, message_max_items=256)
JOB = "3f1c2a8e-5b7d-4c1e-9a0b-2f6d8e4c7a11"


def body(**changes: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "schema_version": 1,
        "job_id": JOB,
        "model": "topics",
        "total": 2,
        "items": [{"index": 0, "id": "a", "text": "one"}, {"index": 1, "text": "two"}],
    }
    b.update(changes)
    return b


def _storable(value: Any) -> bool:
    """No NUL and no lone surrogate anywhere: what PostgreSQL text and JSONB can hold."""
    if isinstance(value, str):
        return "\x00" not in value and not any("\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, dict):
        return all(_storable(k) and _storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_storable(v) for v in value)
    return True


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not json", "must be a JSON object, got str"),
        ([1, 2], "must be a JSON object, got list"),
        (None, "must be a JSON object, got NoneType"),
        (body(schema_version=2), "unsupported message schema_version 2"),
        (body(schema_version="1"), "unsupported message schema_version '1'"),
        ({k: v for k, v in body().items() if k != "items"}, "'items' must be a non-empty list"),
        ({k: v for k, v in body().items() if k != "job_id"}, "job id None is not a UUID"),
        ({k: v for k, v in body().items() if k != "model"}, "model"),
        (body(total="2"), "'total' must be an integer"),
        (body(total=0), "outside 1.."),
        (body(items=[{"index": 0, "text": 5}]), "item 0: text must be a string, got int"),
        (body(items=[{"index": "0", "text": "x"}]), "must be an integer"),
        (body(items=["x"]), "item 0 must be an object"),
        (body(items=[{"index": 0, "text": "x"}, {"index": 0, "text": "y"}]), "repeated"),
        (body(items=[{"index": 0, "text": "x" * 10_000_000}]), "the limit is 20000"),
        (body(items=[{"index": 0, "id": "a\x00b", "text": "x"}]), "NUL"),
        (body(items=[{"index": 0, "id": "a\ud800", "text": "x"}]), "surrogate"),
        (body(metadata={"k": "v\x00"}), "NUL"),
        (body(metadata={"k\udc80": "v"}), "surrogate"),
        (body(metadata={"k": ["x", {"deep": "\ud83d"}]}), "surrogate"),
        (body(model="x'; DROP TABLE jobs; --"), "invalid model"),
        (body(submitted_at=12), "not ISO 8601"),
        (body(priority="urgent"), "priority must be one of"),
    ],
)
def test_hostile_bodies_are_refused_with_a_clear_reason(raw: Any, reason: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse_message(raw, limits=LIMITS)
    assert reason in str(exc.value)
    assert len(str(exc.value)) < 300, "the reason is one short line, not the payload"


def test_sql_metacharacters_control_chars_and_blank_texts_are_accepted_verbatim() -> None:
    sql = "'; DROP TABLE predictions; -- \" \\ %s %(x)s $1 ?"
    msg = parse_message(
        body(
            items=[
                {"index": 0, "id": sql, "text": "tab\there\r\n\x1b[31m\u202e\ufeff"},
                {"index": 1, "text": "   \n\t "},
            ],
            metadata={sql: sql, "nested": {"q": "' OR 1=1 --"}},
        ),
        limits=LIMITS,
    )
    assert msg.items[0].id == sql and msg.metadata == {sql: sql, "nested": {"q": "' OR 1=1 --"}}
    assert msg.items[1].text.strip() == ""  # the worker stores it as an `empty text` error


def test_a_100k_item_message_parses_in_bounded_time() -> None:
    items = [{"index": i, "text": f"text {i}"} for i in range(100_000)]
    started = time.perf_counter()
    msg = parse_message(body(total=100_000, items=items), limits=LIMITS)
    assert len(msg.items) == 100_000
    assert time.perf_counter() - started < 10  # generous: 2 shared cores


# -- fuzzing -----------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
item_values = st.fixed_dictionaries(
    {},
    optional={
        "index": st.integers(-2, 5) | json_values,
        "id": st.none() | st.text(max_size=10) | st.integers() | json_values,
        "text": st.text(max_size=30) | json_values,
    },
)
fuzz_bodies = st.fixed_dictionaries(
    {},
    optional={
        "schema_version": st.just(1) | json_values,
        "job_id": st.just(JOB) | st.uuids().map(str) | json_values,
        "model": st.sampled_from(["topics", "topics@2", "t@prod"]) | st.text(max_size=20),
        "total": st.integers(-1, 6) | json_values,
        "items": st.lists(item_values | json_values, max_size=6) | json_values,
        "metadata": st.none() | st.dictionaries(st.text(max_size=6), json_values, max_size=3),
        "submitted_at": st.none() | st.text(max_size=30) | json_values,
        "priority": st.sampled_from(["high", "normal", "bulk"]) | json_values,
        "deadline": st.none() | st.datetimes().map(str) | json_values,
    },
)
SMALL = Limits(max_text_chars=25, max_job_items=5, message_max_items=2, message_max_bytes=200)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fuzz_bodies | json_values)
def test_fuzz_validator_accepts_or_refuses_never_crashes(raw: Any) -> None:
    try:
        msg = parse_message(raw, limits=SMALL)
    except ValidationError as exc:
        assert str(exc)
        return
    indexes = [i.index for i in msg.items]
    assert len(set(indexes)) == len(indexes) and all(0 <= i < msg.total for i in indexes)
    assert all(isinstance(i.text, str) and len(i.text) <= SMALL.max_text_chars for i in msg.items)
    assert _storable([i.id for i in msg.items]) and _storable(msg.metadata)
    json.dumps(msg.to_json(), allow_nan=False)  # re-encodable as strict JSON


producer_items = st.lists(
    st.text(max_size=30)
    | st.fixed_dictionaries({"text": st.text(max_size=30)}, optional={"id": st.text(max_size=8)})
    | st.fixed_dictionaries({"text": st.text(max_size=5), "id": st.integers()})
    | json_values,
    max_size=7,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    producer_items,
    st.sampled_from(["topics", "topics@3", "topics@staging"]) | st.text(max_size=12),
    st.none() | st.dictionaries(st.text(max_size=6), json_values, max_size=3) | json_values,
)
def test_fuzz_producer_accepts_only_what_the_worker_accepts(
    texts: Any, model: str, metadata: Any
) -> None:
    jid = uuid.uuid4()
    try:
        msgs = build_messages(texts, job_id=jid, model=model, metadata=metadata, limits=SMALL)
    except ValidationError as exc:
        assert str(exc)
        return
    seen: list[int] = []
    for m in msgs:
        wire = json.loads(json.dumps(m.to_json()))  # what kombu's JSON serializer does
        back = parse_message(wire, limits=SMALL)
        assert back == m, "the worker reads exactly what the producer sent"
        assert _storable([i.id for i in back.items]) and _storable(back.metadata)
        seen += [i.index for i in back.items]
    assert seen == list(range(len(seen))) and msgs[0].total == len(seen)


def test_salvage_drops_ids_and_models_postgresql_cannot_store() -> None:
    from textlstm.wire.salvage import salvage

    found = salvage(body(model="m\x00", items=[{"index": 0, "id": "a\ud800", "text": 1}]))
    assert found.items == ((0, None),) and found.model is None
