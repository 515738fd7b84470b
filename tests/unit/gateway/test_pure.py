"""The gateway's pure parts, without a server: tokens (hashing, parsing the setting,
constant-time matching, scopes), the submit body's shape, formats and content types."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from textlstm.errors import ValidationError
from textlstm.gateway.auth import (
    allows,
    authenticate,
    hash_token,
    new_token,
    parse_tokens,
)
from textlstm.gateway.requests import (
    ApiError,
    is_json,
    parse_submit,
    pick_format,
    request_field,
    submit_schema,
)
from textlstm.wire.messages import Limits


def test_tokens_round_trip_and_scopes() -> None:
    read, submit = new_token(), new_token()
    assert read != submit and len(read) >= 40
    entries = parse_tokens(f" {hash_token(read)}:read , {hash_token(submit).upper()}:submit,")
    assert [e.scope for e in entries] == ["read", "submit"]
    assert authenticate(read, entries) == entries[0]
    assert authenticate(submit, entries) == entries[1]  # digests compared in lower case
    assert authenticate("guess", entries) is None
    assert authenticate(read, ()) is None
    assert allows(entries[1], "read") and allows(entries[1], "submit")
    assert allows(entries[0], "read") and not allows(entries[0], "submit")
    assert hash_token("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("nothex:read", "entry 1 must be"),
        (f"{'a' * 64}", "entry 1 must be"),
        (f"{'a' * 64}:read,{'b' * 63}:read", "entry 2 must be"),
        (f"{'a' * 64}:admin", "scope must be one of read, submit"),
    ],
)
def test_a_bad_token_entry_is_named_by_position_only(value: str, words: str) -> None:
    with pytest.raises(ValueError, match=words) as raised:
        parse_tokens(value)
    assert "aaaa" not in str(raised.value) and "nothex" not in str(raised.value)


def test_parse_submit_shapes() -> None:
    req = parse_submit(
        {"texts": ["a", {"id": 1, "text": "b"}], "model": "m", "expires": 30,
         "deadline": "2030-01-01T00:00:00", "priority": "bulk"}
    )  # fmt: skip
    assert req.key == "texts" and req.entries == ["a", {"id": 1, "text": "b"}]
    assert req.expires == 30.0 and req.deadline == datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_submit({"items": [{"text": "x"}]}).key == "items"
    for body, field in (
        ({"texts": None}, "texts"),
        ({"items": {"text": "x"}}, "items"),
        ({"texts": ["a"], "expires": True}, "expires"),
        ({"texts": ["a"], "model": 3}, "model"),
        ({"texts": ["a"], "zzz": 1}, "zzz"),
        ("text", "body"),
    ):
        with pytest.raises(ApiError) as raised:
            parse_submit(body)
        assert raised.value.status == 422 and raised.value.field == field, body


def test_request_field_speaks_the_bodys_key() -> None:
    assert request_field(ValidationError("x", field="items[3]"), "texts") == "texts[3]"
    assert request_field(ValidationError("x", field="items"), "texts") == "texts"
    assert request_field(ValidationError("x", field="metadata"), "texts") == "metadata"
    assert request_field(ValidationError("x"), "items") is None


def test_formats_and_content_types() -> None:
    assert pick_format(None, None) == "jsonl"
    assert pick_format(None, "text/csv;q=0.9, */*") == "csv"
    assert pick_format(None, "application/x-ndjson") == "jsonl"
    assert pick_format("csv", "application/x-ndjson") == "csv"
    with pytest.raises(ApiError):
        pick_format("xml", None)
    assert is_json("application/json") and is_json("Application/JSON; charset=utf-8")
    assert is_json("application/problem+json")
    assert not is_json(None) and not is_json("text/plain") and not is_json("text/json")


def test_the_schema_carries_the_configured_limits() -> None:
    schema = submit_schema(Limits(max_text_chars=77, max_job_items=5))
    texts = schema["properties"]["texts"]
    assert texts["maxItems"] == 5 and texts["minItems"] == 1
    string, obj = texts["items"]["anyOf"]
    assert string["maxLength"] == 77 and obj["properties"]["text"]["maxLength"] == 77
    assert schema["oneOf"] == [{"required": ["texts"]}, {"required": ["items"]}]
    assert "$defs" not in schema and "$ref" not in str(schema)
