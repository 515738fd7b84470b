"""A webhook URL given at submit (Client, Producer) travels in every message and is stored on
the job row the producer records; a bad one is refused in one line before anything is sent."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.jobs import queued
from textlstm.client import Client, Producer
from textlstm.errors import ValidationError
from textlstm.settings import Settings
from textlstm.store.jobs import get_job

URL = "https://hooks.example.com/textlstm?k=1"


def bodies(redis_client: Any, queue: str) -> list[dict[str, Any]]:
    out = []
    for env in queued(redis_client, queue):
        (body,), _, _ = json.loads(base64.b64decode(env["body"]))
        out += body["messages"] if body.get("schema_version") == 2 else [body]
    return out


def test_client_and_producer_carry_and_record_the_webhook(
    topics: dict,
    e2e_settings: Settings,
    session_factory: sessionmaker[Session],
    redis_client: Any,
) -> None:
    s = e2e_settings.model_copy(update={"message_max_items": 2})
    jid = Client(s).submit(["a", "b", "c"], model="topics", record_job=True, webhook=URL)
    with Producer(s, linger_ms=10, record_jobs=True) as p:
        pid = p.submit(["d"], model="topics", webhook=URL)
    msgs = bodies(redis_client, s.queue)
    assert len(msgs) == 3 and all(m["webhook"] == URL for m in msgs)
    with session_factory() as session:
        assert get_job(session=session, job_id=jid).webhook_url == URL
        assert get_job(session=session, job_id=pid).webhook_url == URL


@pytest.mark.parametrize(
    "bad", ["ftp://h/x", "https://u:p@h/", "http://h/" + "x" * 2100, "https://h/#f"]
)
def test_a_bad_webhook_is_refused_before_anything_is_sent(
    bad: str, e2e_settings: Settings, redis_client: Any
) -> None:
    with pytest.raises(ValidationError) as exc:
        Client(e2e_settings).submit(["a"], model="m", record_job=False, webhook=bad)
    assert "webhook URL" in str(exc.value) and "\n" not in str(exc.value)
    assert queued(redis_client, e2e_settings.queue) == []


def test_the_webhook_secret_is_never_shown() -> None:
    from textlstm.errors import SettingsError

    secret = "whsec-0123456789abcdef"
    s = Settings(webhook_secret=secret, _env_file=None)  # type: ignore[call-arg]
    assert s.webhook_secret.get_secret_value() == secret
    assert secret not in repr(s) and secret not in str(s.model_dump())
    with pytest.raises(SettingsError) as exc:  # another field's error: the secret stays hidden
        Settings(webhook_secret=secret, webhook_timeout_s=-1, _env_file=None)  # type: ignore[call-arg]
    assert secret not in str(exc.value) and "TEXTLSTM_WEBHOOK_TIMEOUT_S" in str(exc.value)
    with pytest.raises(SettingsError) as exc:
        Settings(webhook_secret="short-secret", _env_file=None)  # type: ignore[call-arg]
    assert "TEXTLSTM_WEBHOOK_SECRET: must be at least 16 characters" in str(exc.value)
    assert "short-secret" not in str(exc.value)


def test_a_cancel_publishes_the_final_event(
    e2e_settings: Settings, session_factory: sessionmaker[Session], redis_client: Any
) -> None:
    """Client.cancel ends the job in SQL and publishes its final event on the job's channel:
    a waiter is woken by it (the one event; a second cancel publishes nothing)."""
    import uuid

    from textlstm.store.jobs import ensure_job
    from textlstm.wire.events import finished_channel

    jid = uuid.uuid4()
    with session_factory.begin() as s:
        ensure_job(session=s, job_id=jid, model_ref="m", expected=2)
    pubsub = redis_client.pubsub()
    pubsub.subscribe(finished_channel(e2e_settings.queue, jid))
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    client = Client(e2e_settings)
    assert client.cancel(jid).status == "cancelled"
    msg = pubsub.get_message(timeout=5)
    assert json.loads(msg["data"]) == {"type": "job.finished", "job_id": str(jid),
                                       "status": "cancelled"}  # fmt: skip
    client.cancel(jid)
    assert pubsub.get_message(timeout=0.5) is None
    pubsub.close()
    assert client.wait(jid, timeout=5).status == "cancelled"
