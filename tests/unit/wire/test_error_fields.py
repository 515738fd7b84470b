"""A job refused by `build_messages` names the field at fault (`ValidationError.field`), which
the HTTP gateway returns as `error.field`; the message itself is unchanged."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from textlstm.errors import ValidationError
from textlstm.wire.messages import Limits, build_messages

JOB = "3f1c2b9e-0d57-4f5e-9d43-2b3a8c5a1e77"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model": "bad name"}, "model"),
        ({"webhook": "ftp://x"}, "webhook"),
        ({"job_id": "nope"}, "job_id"),
        ({"metadata": {"k": "\x00"}}, "metadata"),
        ({"priority": "urgent"}, "priority"),
        ({"deadline": datetime(2030, 1, 1)}, "deadline"),
        ({"texts": []}, "items"),
        ({"texts": "one string"}, "items"),
        ({"texts": ["ok", "x" * 11]}, "items[1]"),
        ({"texts": ["ok", {"text": "a", "id": ""}]}, "items[1]"),
        ({"texts": [{"id": "d", "text": "a"}, {"id": "d", "text": "b"}]}, "items[1]"),
        ({"texts": ["a"] * 4}, "items"),
    ],
)
def test_each_refusal_names_its_field(change: dict[str, Any], field: str) -> None:
    kwargs: dict[str, Any] = {"texts": ["a"], "job_id": JOB, "model": "m"} | change
    texts = kwargs.pop("texts")
    with pytest.raises(ValidationError) as raised:
        build_messages(texts, limits=Limits(max_text_chars=10, max_job_items=3), **kwargs)
    assert raised.value.field == field, str(raised.value)


def test_a_field_survives_no_rewrap_and_defaults_to_none() -> None:
    assert ValidationError("x").field is None
    assert ValidationError("x", field="model").field == "model"
