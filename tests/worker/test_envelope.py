"""worker.envelope: the total decode boundary in front of kombu and Celery.

Each malformation that used to kill a worker (issue: a malformed envelope crash-loops the
fleet) is refused with a one-line reason; a message kombu and Celery really wrote is accepted;
and, for any mutation of a valid entry, `inspect` returns without raising, and whatever it
accepts kombu's Message reads without raising, with the same body and task name.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kombu import Connection

from tests.security.fuzz_entries import paths
from textlstm.wire.messages import TASK_NAME
from worker.envelope import Accepted, Refused, inspect


def entry(message: Any = None, **overrides: Any) -> dict[str, Any]:
    """A raw list entry as kombu's Redis transport writes a Celery protocol 2 task."""
    body = [[message or {"schema_version": 1, "job_id": "j"}], {}, {"callbacks": None}]
    raw: dict[str, Any] = {
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"task": TASK_NAME, "id": "t-1", "lang": "py", "expires": None},
        "properties": {
            "correlation_id": "t-1",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": "q"},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": "d-1",
        },
    }
    raw.update(overrides)
    return raw


def refused(raw: Any) -> str:
    verdict = inspect(raw if isinstance(raw, str | bytes) else json.dumps(raw))
    assert isinstance(verdict, Refused), verdict
    assert "\n" not in verdict.reason
    return verdict.reason


def test_a_valid_entry_is_accepted_with_its_decoded_body() -> None:
    verdict = inspect(json.dumps(entry({"job_id": "x"})))
    assert isinstance(verdict, Accepted)
    assert verdict.tag == "d-1" and verdict.body[0] == [{"job_id": "x"}]


def test_the_entry_celery_and_kombu_really_write_is_accepted(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    from celery import Celery

    app = Celery("t", broker=redis_url, set_as_current=False)
    app.send_task(TASK_NAME, args=[{"job_id": "x"}], queue=queue_name, serializer="json")
    app.close()
    verdict = inspect(redis_client.rpop(queue_name))
    assert isinstance(verdict, Accepted), verdict
    assert verdict.body[0] == [{"job_id": "x"}]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x80 not json", "entry is not JSON"),
        ([1, 2], "entry must be a JSON object, got list"),
        (entry(properties=None), "properties must be an object, got null"),
        (entry(properties={"delivery_tag": ["a"]}), "properties.delivery_tag must be a 1-256"),
        (entry(properties={"delivery_tag": ""}), "properties.delivery_tag must be a 1-256"),
        (entry(properties={"delivery_tag": "t\ud800"}), "delivery_tag is not valid Unicode"),
        (entry(headers={"task": TASK_NAME, "id": "\udfff"}), "headers.id is not valid Unicode"),
        (entry(properties={"delivery_tag": "t", "body_encoding": "rot13"}), "body_encoding"),
        (entry(properties={"delivery_tag": "t", "delivery_info": []}), "delivery_info must be"),
        (entry(properties={"delivery_tag": "t", "delivery_info": {"exchange": 1}}), "exchange"),
        (entry(properties={"delivery_tag": "t", "priority": "high"}), "priority must be"),
        (entry(headers=["task"]), "headers must be an object, got list"),
        (entry(headers={}), "headers.task is missing"),
        (entry(headers={"task": ["x"]}), "is not 'textlstm.classify'"),
        (entry(headers={"task": "other.task"}), "is not 'textlstm.classify'"),
        (entry(headers={"task": TASK_NAME, "id": 5}), "headers.id must be a string"),
        (entry(headers={"task": TASK_NAME, "compression": "zlib"}), "compressed bodies"),
        (entry(**{"content-type": "application/x-python-serialize"}), "JSON only"),
        (entry(**{"content-encoding": "latin-1"}), "UTF-8 only"),
        (entry(body=None), "body must be a non-empty string, got null"),
        (entry(body="a=="), "not valid base64"),
        (entry(body="!!!!"), "not valid base64"),
        (entry(body=base64.b64encode(b"\xff\xfe").decode()), "body is not UTF-8"),
        (entry(body=base64.b64encode(b"[[1],").decode()), "body is not JSON"),
        (entry(body=base64.b64encode(b"[" * 100_000).decode()), "body is not JSON"),
        (entry(body=base64.b64encode(b'{"a": 1}').decode()), "protocol 2 task body"),
        (entry(body=base64.b64encode(b"[[], {}, {}]").decode()), "one positional argument"),
        (entry(body=base64.b64encode(b'[[1], {"k": 1}, {}]').decode()), "no keyword arguments"),
        (entry(body=base64.b64encode(b"[[1], {}, 7]").decode()), "embed must be an object"),
    ],
)
def test_malformed_envelopes_are_refused_with_a_reason(raw: Any, reason: str) -> None:
    assert reason in refused(raw)


def test_a_plain_body_must_be_encodable_and_the_tag_survives_for_the_record() -> None:
    raw = entry(body="[[1], {}, {}]")
    raw["properties"].pop("body_encoding")
    assert isinstance(inspect(json.dumps(raw)), Accepted)
    raw["body"] = "\ud800"
    verdict = inspect(json.dumps(raw))
    assert isinstance(verdict, Refused) and "lone surrogate" in verdict.reason
    assert verdict.tag == "d-1" and verdict.task_id == "t-1"


def test_a_refusal_keeps_the_readable_message_for_error_rows() -> None:
    # Refused for its headers, before the body is checked: the job is still read from it.
    raw = entry({"job_id": "j-1"}, headers={"task": "other", "id": "t"})
    verdict = inspect(json.dumps(raw))
    assert isinstance(verdict, Refused) and verdict.message == {"job_id": "j-1"}
    raw = entry(body="not base64 at all")
    verdict = inspect(json.dumps(raw))
    assert isinstance(verdict, Refused) and verdict.message is None
    raw = entry(body=base64.b64encode(b'[[{"job_id": "j-2"}], {"x": 1}, {}]').decode())
    verdict = inspect(json.dumps(raw))
    assert isinstance(verdict, Refused) and verdict.message == {"job_id": "j-2"}


# -- the property: total, and what it accepts kombu reads --------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)  # fmt: skip


def mutate(raw: dict[str, Any], path: tuple[Any, ...], new: Any, how: str) -> Any:
    if not path:
        return new
    out = copy.deepcopy(raw)
    parent = out
    for step in path[:-1]:
        parent = parent[step]
    if how == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return out


@pytest.fixture(scope="module")
def kombu_channel(redis_url: str) -> Iterator[Any]:
    with Connection(redis_url, transport="worker.transport:Transport") as conn:
        yield conn.channel()


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), new=json_values, how=st.sampled_from(["replace", "delete"]))
def test_any_mutation_is_refused_or_read_by_kombu_exactly_as_accepted(
    kombu_channel: Any, data: st.DataObject, new: Any, how: str
) -> None:
    from kombu.transport.virtual import Message

    raw = entry({"job_id": "j", "items": [{"index": 0, "text": "t"}]})
    # Half the time the body is plain (no base64) so that mutations reach inside it too.
    if data.draw(st.booleans()):
        raw["body"] = base64.b64decode(raw["body"]).decode()
        raw["properties"].pop("body_encoding")
        raw["body"] = json.loads(raw["body"])  # mutated as a structure, re-encoded below
    path = data.draw(st.sampled_from(list(paths(raw))))
    mutated = mutate(raw, path, new, how)
    if isinstance(mutated, dict) and not isinstance(mutated.get("body"), str | None):
        mutated["body"] = json.dumps(mutated["body"])
    verdict = inspect(json.dumps(mutated))  # never raises
    if isinstance(verdict, Accepted):
        message = Message(verdict.payload, channel=kombu_channel)
        assert message.headers["task"] == TASK_NAME
        assert not message.errors
        assert json.loads(message.body) == verdict.body
        assert isinstance(message.delivery_tag, str) and message.delivery_tag
