"""A producer cannot aim the workers at internal services through a webhook URL: internal
addresses are refused at delivery unless TEXTLSTM_WEBHOOK_ALLOW allows them, checked on the
address actually connected to, and redirects are never followed."""

from __future__ import annotations

import time
import uuid

from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.receiver import Receiver
from textlstm.serving.webhooks import WebhookSender
from textlstm.store.events import get_delivery
from textlstm.store.predictions import JobItems, PredictionRecord, save_batch


def delivery_of(session_factory: sessionmaker[Session], url: str, allow: str) -> object:
    jid = uuid.uuid4()
    with session_factory.begin() as s:
        recs = [PredictionRecord(0, "ok", "pos")]
        save_batch(session=s, jobs={jid: JobItems("m", 1, recs, webhook_url=url)})
    sender = WebhookSender(session_factory, secret=b"k", allow=allow, timeout_s=2,
                           backoff_initial_s=0.01, backoff_max_s=0.02)  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        sender.run_once()
        with session_factory() as s:
            d = get_delivery(session=s, job_id=jid)
            if d.state != "pending":
                return d
    raise AssertionError("still pending")


def test_loopback_is_refused_by_default(
    session_factory: sessionmaker[Session], receiver: Receiver
) -> None:
    for url in (receiver.url, receiver.url.replace("127.0.0.1", "localhost")):
        d = delivery_of(session_factory, url, allow="")
        assert d.state == "failed" and d.attempts == 1, d.last_error
        assert d.last_error.startswith("refused:") and "internal address" in d.last_error
    assert receiver.requests == []  # nothing ever reached it


def test_allowed_only_as_configured(
    session_factory: sessionmaker[Session], receiver: Receiver
) -> None:
    assert delivery_of(session_factory, receiver.url, allow="10.0.0.0/8").state == "failed"
    assert delivery_of(session_factory, receiver.url, allow="127.0.0.0/8").state == "delivered"
    assert len(receiver.requests) == 1


def test_redirects_are_not_followed(
    session_factory: sessionmaker[Session], receiver: Receiver
) -> None:
    receiver.replies = [(307, 0, {"Location": "http://169.254.169.254/latest/meta-data/"})]
    d = delivery_of(session_factory, receiver.url, allow="127.0.0.1")
    assert (d.state, d.last_status_code) == ("failed", 307)
    assert "redirects are not followed" in d.last_error
    assert len(receiver.requests) == 1
