"""The producer against the real Redis (and the real databases when one is configured)."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.jobs import queued
from textlstm.client import Client
from textlstm.errors import BrokerError, NotFoundError, ValidationError
from textlstm.settings import Settings
from textlstm.store.jobs import get_job
from textlstm.store.registry import register_bundle
from textlstm.wire.messages import TASK_NAME, Limits, parse_message


def make_settings(redis_url: str, queue: str, **kw: Any) -> Settings:
    return Settings(
        _env_file=None,
        broker_url=redis_url,
        queue=queue,
        message_max_items=2,  # type: ignore[call-arg]
        max_text_chars=100,
        **kw,
    )


def test_submit_publishes_json_celery_tasks(
    redis_client: Any,
    redis_url: str,
    queue_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    client = Client(make_settings(redis_url, queue_name))
    texts = ["good", {"id": "r-2", "text": "bad"}, "meh", {"id": 9, "text": "fine"}, "ok"]
    job_id = client.submit(texts, model="sent@production", metadata={"batch": "b1"})

    envelopes = queued(redis_client, queue_name)
    assert len(envelopes) == 3
    bodies = []
    for env in envelopes:
        assert env["content-type"] == "application/json"
        assert env["headers"]["task"] == TASK_NAME
        # The texts stay in the body: headers (Flower, broker tools) carry only a summary.
        assert env["headers"]["argsrepr"].startswith(f"<job {job_id} items ")
        assert "good" not in json.dumps(env["headers"]) and "bad" not in json.dumps(env["headers"])
        args, kwargs, _embed = json.loads(base64.b64decode(env["body"]))
        assert kwargs == {} and len(args) == 1
        msg = parse_message(args[0], limits=Limits())
        assert msg.job_id == job_id and msg.total == 5 and msg.model == "sent@production"
        bodies.append(args[0])
    assert [i["index"] for b in bodies for i in b["items"]] == [0, 1, 2, 3, 4]
    assert [i["id"] for b in bodies for i in b["items"]] == [None, "r-2", None, "9", None]
    assert bodies[0]["metadata"] == {"batch": "b1"}
    # No database was configured: nothing recorded, no stray SQLite file created.
    assert not (tmp_path / "textlstm.db").exists()


@pytest.mark.parametrize(
    ("texts", "kwargs", "error"),
    [
        ([], {}, "job is empty"),
        (["fine", 7], {}, "item 1: text must be a string"),
        (["fine", "x" * 101], {}, "item 1: text is 101 characters"),
        (["a"] * 5, {"max_job_items": 4}, "more than 4 items"),
        ([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}], {}, "duplicate id"),
        (["a"], {"job_id": "nope"}, "not a UUID"),
        (["a"], {"model": "bad ref!"}, "invalid model"),
    ],
)
def test_invalid_jobs_enqueue_nothing(
    redis_client: Any,
    redis_url: str,
    queue_name: str,
    texts: list[Any],
    kwargs: dict[str, Any],
    error: str,
) -> None:
    limit = {"max_job_items": kwargs.pop("max_job_items")} if "max_job_items" in kwargs else {}
    client = Client(make_settings(redis_url, queue_name, **limit))
    kwargs.setdefault("model", "sent")
    with pytest.raises(ValidationError, match=error):
        client.submit(texts, **kwargs)
    assert redis_client.llen(queue_name) == 0
    assert list(redis_client.scan_iter(match=f"*{queue_name}*")) == []


def test_missing_model_is_an_error(redis_url: str, queue_name: str) -> None:
    with pytest.raises(ValidationError, match="no model given"):
        Client(make_settings(redis_url, queue_name)).submit(["a"])


def test_unreachable_broker_is_one_clear_error(queue_name: str) -> None:
    client = Client(make_settings("redis://:hunter2@127.0.0.1:1/0", queue_name))
    with pytest.raises(BrokerError, match=r"redis://:\*\*\*@127.0.0.1:1/0") as info:
        client.submit(["a"], model="m")
    assert "hunter2" not in str(info.value)


def test_job_row_recorded_when_database_configured(
    db_url: str,
    redis_client: Any,
    redis_url: str,
    queue_name: str,
    session_factory: sessionmaker[Session],
    fake_bundle: Path,
) -> None:
    with session_factory.begin() as s:
        register_bundle(session=s, path=fake_bundle, name="sent", aliases=["production"])
    client = Client(make_settings(redis_url, queue_name, database_url=db_url))
    job_id = client.submit(["a", "b", "c"], model="sent@production", metadata={"k": "v"})
    with session_factory() as s:
        job = get_job(session=s, job_id=job_id)
        assert (job.status, job.expected_count, job.model_ref, job.meta) == (
            "queued",
            3,
            "sent@production",
            {"k": "v"},
        )
    assert redis_client.llen(queue_name) == 2
    # Re-sending the same job id is allowed (workers store each item once).
    assert client.submit(["a", "b", "c"], model="sent@production", job_id=job_id) == job_id
    assert redis_client.llen(queue_name) == 4
    # A different job under the same id is refused before anything is sent.
    with pytest.raises(ValidationError, match="already used"):
        client.submit(["a"], model="sent@production", job_id=job_id)
    # An unknown model is refused up front when the registry is reachable.
    with pytest.raises(NotFoundError, match="no alias 'staging'"):
        client.submit(["a"], model="sent@staging", job_id=uuid.uuid4())
    assert redis_client.llen(queue_name) == 4


def test_submit_many_packs_jobs_into_envelopes_or_refuses_them_all(
    redis_client: Any, redis_url: str, queue_name: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """No database: validated and published only; message_max_items=2 packs 5 jobs in 3."""
    monkeypatch.chdir(tmp_path)
    client = Client(make_settings(redis_url, queue_name))
    jobs = [{"texts": [f"t{n}"], "model": "sent"} for n in range(5)]
    with pytest.raises(ValidationError) as refused:
        client.submit_many([*jobs, {"texts": ["x" * 101], "model": "sent"}])
    assert refused.value.field == "jobs[5].items[0]"
    assert queued(redis_client, queue_name) == []  # all or nothing
    ids = client.submit_many(jobs)
    bodies = []
    for env in queued(redis_client, queue_name):
        (body,), _kwargs, _embed = json.loads(base64.b64decode(env["body"]))
        bodies.append(body)
    assert len(bodies) == 3
    sent = [m["job_id"] for b in bodies for m in b.get("messages", [b])]
    assert sent == [str(j) for j in ids]
