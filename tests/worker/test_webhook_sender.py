"""The webhook sender (textlstm/serving/webhooks.py) against a real HTTP receiver on 127.0.0.1
and a real database: signed delivery, retries with backoff, a receiver that is down, redirects
not followed, internal addresses refused unless allowed, the record of each outcome."""

from __future__ import annotations

import json
import logging
import socket
import time
import uuid

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.receiver import Receiver
from textlstm.serving.webhooks import WebhookSender
from textlstm.store.events import get_delivery
from textlstm.store.predictions import JobItems, PredictionRecord, save_batch
from textlstm.wire.events import DELIVERY_HEADER, SIGNATURE_HEADER, verify_signature

SECRET = "whsec-test-0123456789"


def finish_job(session_factory: sessionmaker[Session], url: str) -> uuid.UUID:
    jid = uuid.uuid4()
    with session_factory.begin() as s:
        recs = [PredictionRecord(0, "ok", "pos"), PredictionRecord(1, "error", error="x")]
        save_batch(session=s, jobs={jid: JobItems("m", 2, recs, webhook_url=url)})
    return jid


def sender(session_factory: sessionmaker[Session], **kw: object) -> WebhookSender:
    opts: dict = {"secret": SECRET.encode(), "allow": "127.0.0.1", "timeout_s": 2.0,
                  "backoff_initial_s": 0.05, "backoff_max_s": 0.2, "rand": lambda: 0.0}  # fmt: skip
    return WebhookSender(session_factory, **{**opts, **kw})  # type: ignore[arg-type]


def drain(s: WebhookSender, jid: uuid.UUID, session_factory: sessionmaker[Session]) -> object:
    """Run the sender's rounds until the delivery is delivered or failed (max 20 s)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        s.run_once()
        with session_factory() as session:
            d = get_delivery(session=session, job_id=jid)
            if d is not None and d.state != "pending":
                return d
        time.sleep(0.05)
    raise AssertionError("delivery still pending")


def test_delivered_once_signed_with_the_event(
    session_factory: sessionmaker[Session], receiver: Receiver
) -> None:
    jid = finish_job(session_factory, receiver.url)
    d = drain(sender(session_factory), jid, session_factory)
    assert (d.state, d.attempts, d.last_status_code, d.last_error) == ("delivered", 1, 200, None)
    (req,) = receiver.requests
    assert req.path == "/hook?token=abc"
    assert verify_signature(SECRET.encode(), req.body, req.headers[SIGNATURE_HEADER])
    assert req.headers[DELIVERY_HEADER] == str(jid)
    assert req.headers["Content-Type"] == "application/json"
    event = json.loads(req.body)
    assert event["type"] == "job.finished" and event["job_id"] == str(jid)
    assert (event["status"], event["ok"], event["errors"], event["expected"]) == (
        "partial", 1, 1, 2,
    )  # fmt: skip


def test_server_errors_are_retried_with_backoff(
    session_factory: sessionmaker[Session], receiver: Receiver
) -> None:
    receiver.replies = [(503, 0, {}), (500, 0, {}), (204, 0, {})]
    jid = finish_job(session_factory, receiver.url)
    d = drain(sender(session_factory), jid, session_factory)
    assert (d.state, d.attempts, d.last_status_code) == ("delivered", 3, 204)
    times = [r.at for r in receiver.requests]
    assert len(times) == 3
    # backoff with rand=0: 0.025 s then 0.05 s (initial 0.05, doubled, times 0.5)
    assert times[1] - times[0] >= 0.02 and times[2] - times[1] >= 0.045
    bodies = {r.body for r in receiver.requests}
    assert len(bodies) == 1  # the same event each time; only the signature's time changes


def test_a_receiver_that_is_down_fails_after_max_attempts(
    session_factory: sessionmaker[Session],
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    jid = finish_job(session_factory, f"http://127.0.0.1:{port}/hook")
    d = drain(sender(session_factory, max_attempts=3), jid, session_factory)
    assert (d.state, d.attempts, d.last_status_code) == ("failed", 3, None)
    assert "no response" in d.last_error and "\n" not in d.last_error


def test_a_client_error_is_not_retried(
    session_factory: sessionmaker[Session], receiver: Receiver
) -> None:
    receiver.replies = [(400, 0, {})]
    jid = finish_job(session_factory, receiver.url)
    d = drain(sender(session_factory), jid, session_factory)
    assert (d.state, d.attempts, d.last_error) == ("failed", 1, "HTTP 400")


def test_a_slow_receiver_times_out_and_is_retried(
    session_factory: sessionmaker[Session], receiver: Receiver
) -> None:
    receiver.replies = [(200, 1.5, {}), (200, 0, {})]
    jid = finish_job(session_factory, receiver.url)
    started = time.monotonic()
    d = drain(sender(session_factory, timeout_s=0.5), jid, session_factory)
    assert (d.state, d.attempts) == ("delivered", 2)
    assert time.monotonic() - started < 5


def test_the_thread_delivers_when_nudged(
    session_factory: sessionmaker[Session], receiver: Receiver
) -> None:
    s = sender(session_factory, sweep_interval_s=60)  # only the nudge can wake it in time
    s.start()
    try:
        time.sleep(0.2)  # let its first wait begin
        jid = finish_job(session_factory, receiver.url)
        s.nudge()
        assert len(receiver.wait_for(1, timeout=10)) == 1
    finally:
        s.stop()
    with session_factory() as session:
        assert get_delivery(session=session, job_id=jid).state == "delivered"


def test_no_secret_no_delivery(session_factory: sessionmaker[Session], receiver: Receiver) -> None:
    jid = finish_job(session_factory, receiver.url)
    d = drain(sender(session_factory, secret=None), jid, session_factory)
    assert d.state == "failed" and "TEXTLSTM_WEBHOOK_SECRET is not set" in d.last_error
    assert receiver.requests == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_secret_is_in_no_record_and_no_log(
    session_factory: sessionmaker[Session], receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.replies = [(500, 0, {}), (200, 0, {})]
    caplog.set_level(logging.DEBUG)
    jid = finish_job(session_factory, receiver.url)
    s = sender(session_factory)
    d = drain(s, jid, session_factory)
    assert d.state == "delivered"
    assert SECRET not in caplog.text  # every logger, urllib3's DEBUG lines included
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("textlstm")]
    assert ours and not any("token=abc" in m for m in ours)  # our lines omit the URL's path
    assert SECRET not in repr(s)
    with session_factory() as session:
        row = get_delivery(session=session, job_id=jid)
        assert all(SECRET not in str(getattr(row, c)) for c in row.__table__.columns.keys())


def test_https_verifies_the_server(receiver: Receiver) -> None:
    """https to a server that does not speak TLS (the plain receiver) fails the handshake:
    TLS is attempted on the checked address and nothing is sent in clear."""
    from textlstm.serving.webhooks import post
    from textlstm.wire.events import parse_allow_list

    url = receiver.url.replace("http://", "https://")
    attempt = post(url, b"{}", {}, timeout_s=2, allow=parse_allow_list("127.0.0.1"))
    assert attempt.status_code is None and attempt.retryable
    assert "SSL" in attempt.error, attempt.error
    assert all(r.body != b"{}" for r in receiver.requests)
