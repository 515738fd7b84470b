"""`decode_json`: plain JSON bodies take the standard library, everything else kombu's checks."""

from __future__ import annotations

import json
import pickle
import zlib

import pytest
from kombu.exceptions import ContentDisallowed
from kombu.message import Message

from worker.batching import decode_json


def message(body: bytes, content_type: str, **headers: str) -> Message:
    return Message(
        body=body, content_type=content_type, headers=headers,
        content_encoding="utf-8" if content_type == "application/json" else "binary",
        accept=["application/json"],
    )  # fmt: skip


def test_json_body_decodes_like_kombu_and_keeps_kombu_looking_objects_as_data() -> None:
    body = [[{"job_id": "j", "items": [{"index": 0, "text": "é", "id": None}]}], {}, {}]
    raw = json.dumps(body).encode()
    m = message(raw, "application/json")
    assert decode_json(m) == body == message(raw, "application/json").decode()
    # kombu's object hook would turn this into a datetime; ours leaves plain data alone.
    odd = [[{"__type__": "datetime", "__value__": "2026-01-01T00:00:00"}], {}, {}]
    assert decode_json(message(json.dumps(odd).encode(), "application/json")) == odd


def test_a_pickle_is_refused_by_kombu_and_never_loaded() -> None:
    with pytest.raises(ContentDisallowed):
        decode_json(message(pickle.dumps([[{}], {}, {}]), "application/x-python-serialize"))


def test_a_compressed_json_body_is_left_to_kombu_which_inflates_it() -> None:
    body = [[{"job_id": "j"}], {}, {}]
    m = message(zlib.compress(json.dumps(body).encode()), "application/json",
                compression="application/x-gzip")  # fmt: skip
    assert decode_json(m) == body
