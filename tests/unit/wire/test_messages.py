"""The message schema and job validation: pure, no services."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textlstm.errors import ValidationError
from textlstm.wire.messages import (
    SCHEMA_VERSION,
    Limits,
    build_messages,
    normalize_items,
    parse_message,
    split_items,
)
from textlstm.wire.refs import ModelRef, parse_model_ref

LIMITS = Limits(max_text_chars=50, max_job_items=10, message_max_items=3, message_max_bytes=10_000)


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ([], "job is empty"),
        ("just one string", "not a single str"),
        (["ok", 3], "item 1: text must be a string, got int"),
        (["x" * 51], "item 0: text is 51 characters; the limit is 50"),
        (["a"] * 11, "more than 10 items"),
        ([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}], "duplicate id 'a'"),
        ([{"id": "", "text": "x"}], "id must be a non-empty string"),
        ([{"id": ["a"], "text": "x"}], "id must be a non-empty string"),
        ([{"id": True, "text": "x"}], "id must be a non-empty string"),
        ([{"id": "a"}], "no 'text'"),
        ([{"txt": "a", "text": "b"}], "unknown key"),
        ([None], "text must be a string, got NoneType"),
    ],
)
def test_job_validation_errors(texts: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        build_messages(texts, job_id=uuid.uuid4(), model="m", limits=LIMITS)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"job_id": "not-a-uuid"}, "is not a UUID"),
        ({"model": "m@"}, "invalid model reference"),
        ({"model": "../m"}, "invalid model name"),
        ({"metadata": {"a": object()}}, "not JSON-serialisable"),
        ({"metadata": {"a": float("nan")}}, "not JSON-serialisable"),
        ({"metadata": ["a"]}, "must be a JSON object"),
        ({"metadata": {"a": "x" * 20_000}}, "over 16384 bytes"),
    ],
)
def test_job_level_errors(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"job_id": uuid.uuid4(), "model": "m", "limits": LIMITS, **kwargs}
    with pytest.raises(ValidationError, match=message):
        build_messages(["a"], **args)  # type: ignore[arg-type]


def test_messages_carry_job_id_indexes_and_total() -> None:
    jid = uuid.uuid4()
    texts = ["a", {"id": 42, "text": "b"}, "c", {"id": "z", "text": "d"}, "e"]
    msgs = build_messages(
        texts, job_id=str(jid), model="m@production", metadata={"k": 1}, limits=LIMITS
    )
    assert [len(m.items) for m in msgs] == [3, 2]
    bodies = [m.to_json() for m in msgs]
    assert all(b["job_id"] == str(jid) and b["total"] == 5 for b in bodies)
    assert all(b["schema_version"] == SCHEMA_VERSION and b["metadata"] == {"k": 1} for b in bodies)
    assert [i["index"] for b in bodies for i in b["items"]] == [0, 1, 2, 3, 4]
    assert bodies[0]["items"][1] == {"index": 1, "id": "42", "text": "b"}
    # What the worker sees after a JSON round trip is the same message.
    assert parse_message(bodies[1], limits=LIMITS) == msgs[1]


def test_split_respects_byte_budget() -> None:
    items = normalize_items(["x" * 40] * 5, limits=LIMITS)
    chunks = split_items(items, limits=Limits(message_max_items=100, message_max_bytes=250))
    assert [len(c) for c in chunks] == [2, 2, 1]
    one = split_items(items[:1], limits=Limits(message_max_items=100, message_max_bytes=1))
    assert [len(c) for c in one] == [1]  # a message always holds at least one item


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(max_size=20), min_size=1, max_size=40), st.integers(1, 7))
def test_split_keeps_every_item_once_in_order(texts: list[str], per_message: int) -> None:
    limits = Limits(max_text_chars=20, max_job_items=100, message_max_items=per_message)
    msgs = build_messages(texts, job_id=uuid.uuid4(), model="m", limits=limits)
    assert [i.text for m in msgs for i in m.items] == texts
    assert all(1 <= len(m.items) <= per_message for m in msgs)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b.update(schema_version=2), "unsupported message schema_version 2"),
        (lambda b: b.update(total=True), "'total' must be an integer"),
        (lambda b: b.update(items=[]), "non-empty list"),
        (lambda b: b["items"][0].update(index=5), "out of range"),
        (lambda b: b["items"].append(dict(b["items"][0])), "out of range or repeated"),
        (lambda b: b["items"][0].update(text="x" * 99), "limit is 50"),
        (lambda b: b.update(submitted_at="yesterday"), "not ISO 8601"),
    ],
)
def test_parse_message_rejects(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    body = build_messages(["a", "b"], job_id=uuid.uuid4(), model="m", limits=LIMITS)[0].to_json()
    mutate(body)
    with pytest.raises(ValidationError, match=message):
        parse_message(body, limits=LIMITS)


def test_parse_message_ignores_unknown_keys() -> None:
    body = build_messages(["a"], job_id=uuid.uuid4(), model="m", limits=LIMITS)[0].to_json()
    body["future_field"] = 1
    assert parse_message(body, limits=LIMITS).items[0].text == "a"


def test_model_refs() -> None:
    assert parse_model_ref("sent") == ModelRef("sent")
    assert parse_model_ref("sent@12") == ModelRef("sent", version=12)
    assert parse_model_ref("sent@production") == ModelRef("sent", alias="production")
    assert str(parse_model_ref("sent@staging")) == "sent@staging"
    for bad in ["", "@1", "a@b@c", "a b", "a@-x", "a@0", ["sent"], None]:
        for _ in range(2):  # parsing is cached: a refusal is not, and is given again
            with pytest.raises(ValidationError):
                parse_model_ref(bad)  # type: ignore[arg-type]


def test_new_ids_are_random_version_4_uuids_and_differ_across_a_fork() -> None:
    import os

    from textlstm.wire.messages import new_id

    ids = {new_id() for _ in range(1000)}  # crosses several 256-id pools
    assert len(ids) == 1000 and {u.version for u in ids} == {4}
    assert {u.variant for u in ids} == {uuid.RFC_4122}  # the bits are set on the integers
    bits = [sum(u.int >> k & 1 for u in ids) for k in range(128)]  # the other bits are random
    fixed = {76, 77, 78, 79, 62, 63}
    assert all(300 < n < 700 for k, n in enumerate(bits) if k not in fixed), bits
    new_id()  # the parent's pool is part used when the child starts
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once
        os.write(write, new_id().bytes)
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 16) != new_id().bytes
