"""Raw Redis list entries for fuzzing a real worker: valid classify tasks in the exact format
kombu and Celery write, and mutations of every part of them (the raw bytes, the kombu
envelope, the Celery headers and body, the textlstm message, at every nesting level).

A `Case` is what is pushed (`raw`) and what can be known about it afterwards: the delivery
tag and the job id that a worker could read from it (None when the mutation destroyed them).
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from textlstm.wire.messages import TASK_NAME

SENTINEL = "\u0000raw-token\u0000"
#: JSON text no Python value serialises to: put in place of a value, as a hostile producer in
#: another language could write it.
RAW_TOKENS = [
    "1" + "0" * 5000,  # past Python's 4,300-digit int limit
    "1e999",  # infinity once parsed
    "NaN",
    "-0",
    "[" * 1500 + "]" * 1500,  # nested past the default recursion limit
    '"\\ud800"',  # a lone surrogate
    '"\\u0000"',
    '{"a": 1, "a": 2}',
    "9" * 40,
]


@dataclass(frozen=True)
class Case:
    raw: bytes
    valid: bool
    tag: str | None
    job_id: str | None
    texts: int  # items, when valid


def message(job: uuid.UUID, texts: list[str], model: str = "topics") -> dict[str, Any]:
    return {
        "schema_version": 1,
        "job_id": str(job),
        "model": model,
        "total": len(texts),
        "items": [{"index": i, "id": f"e-{i}", "text": t} for i, t in enumerate(texts)],
        "metadata": {"source": "fuzz", "n": [1, {"k": "v"}]},
        "submitted_at": "2026-12-04T12:00:00+00:00",
        "priority": "normal",
        "deadline": None,
    }


def envelope(msg: dict[str, Any], queue: str, tag: str) -> dict[str, Any]:
    """The structure of a raw entry, with the Celery body still a structure."""
    task_id = str(uuid.uuid4())
    return {
        "body": [[msg], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}],
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py", "task": TASK_NAME, "id": task_id, "shadow": None, "eta": None,
            "expires": None, "group": None, "retries": 0, "timelimit": [None, None],
            "root_id": task_id, "parent_id": None, "argsrepr": "<fuzz>", "kwargsrepr": "{}",
            "origin": "fuzz@host", "ignore_result": True,
        },
        "properties": {
            "correlation_id": task_id, "reply_to": str(uuid.uuid4()), "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue}, "priority": 0,
            "body_encoding": "base64", "delivery_tag": tag,
        },
    }  # fmt: skip


def _dumps(value: Any) -> str:
    text = json.dumps(value)
    for token in RAW_TOKENS:
        text = text.replace(json.dumps(SENTINEL + token), token)
    return text


def encode(structure: Any) -> bytes:
    """A raw entry from its structure: the Celery body serialised (base64 when the envelope
    says so), then the envelope."""
    if isinstance(structure, dict) and not isinstance(structure.get("body"), str | None):
        out = dict(structure)
        text = _dumps(structure["body"])
        props = structure.get("properties")
        b64 = isinstance(props, dict) and props.get("body_encoding") == "base64"
        out["body"] = base64.b64encode(text.encode("utf-8", "surrogatepass")).decode() if b64 \
            else text  # fmt: skip
        structure = out
    return _dumps(structure).encode("utf-8", "surrogatepass")


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, (*prefix, i))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12) | st.sampled_from([SENTINEL + t for t in RAW_TOKENS])
    | st.sampled_from(["", "base64", "utf-8", TASK_NAME, "application/json", "x" * 300]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=8,
)  # fmt: skip


def _readable(structure: Any) -> tuple[str | None, str | None]:
    """The delivery tag and job id a worker could read from a mutated structure."""
    tag = job = None
    if isinstance(structure, dict):
        props = structure.get("properties")
        if isinstance(props, dict) and isinstance(props.get("delivery_tag"), str):
            tag = props["delivery_tag"]
        body = structure.get("body")
        try:
            msg = body[0][0]  # type: ignore[index]
            job = msg["job_id"] if isinstance(msg["job_id"], str) else None
        except (TypeError, KeyError, IndexError):
            pass
    return tag, job


def _parse(raw: bytes) -> Any:
    """The structure of a raw entry a byte mutation left readable (the body decoded too),
    or None. A changed byte may leave a valid entry with another tag or job id."""
    try:
        structure = json.loads(raw)
        body = structure["body"]
        if structure["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        structure["body"] = json.loads(body)
        return structure
    except Exception:  # noqa: BLE001 - unreadable: found by its entry on the dead-letter list
        return None


@st.composite
def cases(draw: st.DrawFn, queue: str) -> Case:
    job, tag = uuid.uuid4(), str(uuid.uuid4())
    texts = draw(st.lists(st.sampled_from(["goal", "match", "market", "shares", "team won"]),
                          min_size=1, max_size=3))  # fmt: skip
    structure = envelope(message(job, texts), queue, tag)
    if draw(st.booleans()):  # a plain (not base64) body, as another kombu client may write
        structure["properties"].pop("body_encoding")
    kind = draw(st.sampled_from(["valid", "valid", "structure", "structure", "structure", "raw"]))
    if kind == "valid":
        return Case(encode(structure), True, tag, str(job), len(texts))
    if kind == "raw":
        raw = encode(structure)
        how = draw(st.sampled_from(["truncate", "byte", "append", "latin1"]))
        at = draw(st.integers(0, len(raw) - 1))
        if how == "truncate":
            raw = raw[:at]
        elif how == "byte":
            raw = raw[:at] + bytes([draw(st.integers(0, 255))]) + raw[at + 1 :]
        elif how == "append":
            raw = raw + draw(st.binary(min_size=1, max_size=20))
        else:
            raw = raw.replace(b"goal", "gôal".encode("latin-1"))
        return Case(raw, False, *_readable(_parse(raw)), len(texts))
    path = draw(st.sampled_from(list(paths(structure))))
    mutated = copy.deepcopy(structure)
    how = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
    new = draw(json_values)
    if not path:
        mutated = new
    else:
        parent = mutated
        for step in path[:-1]:
            parent = parent[step]
        if how == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif how == "add" and isinstance(parent[path[-1]], dict):
            parent[path[-1]][draw(st.text(max_size=6))] = new
        elif how == "add" and isinstance(parent[path[-1]], list):
            parent[path[-1]].append(new)
        else:
            parent[path[-1]] = new
    tag_seen, job_seen = _readable(mutated)
    return Case(encode(mutated), False, tag_seen, job_seen, len(texts))
