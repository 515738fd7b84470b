"""Final events on the wire: the webhook URL rules, the allow-list setting, the signature."""

from __future__ import annotations

import hashlib
import hmac
import uuid

import pytest

from textlstm.errors import ValidationError
from textlstm.wire.events import (
    FINAL_STATUSES,
    WEBHOOK_URL_CHARS,
    check_webhook_url,
    event_body,
    finished_channel,
    parse_allow_list,
    sign,
    verify_signature,
)
from textlstm.wire.messages import Limits, build_messages, parse_message

SECRET = b"s3cret-key"
LIMITS = Limits(max_text_chars=100, max_job_items=10, message_max_items=5, message_max_bytes=1000)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/done",
        "http://10.0.0.5:8080/x?job=1",  # internal addresses are decided at delivery
        "https://[2001:db8::1]/hook",
    ],
)
def test_good_webhook_urls_pass(url: str) -> None:
    assert check_webhook_url(url) == url


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://example.com/x", "must be http or https"),
        ("file:///etc/passwd", "must be http or https"),
        ("gopher://127.0.0.1:6379/_FLUSHALL", "must be http or https"),
        ("https://user:pw@example.com/", "credentials"),
        ("https://token@example.com/", "credentials"),
        ("https:///nohost", "no host"),
        ("https://example.com/a b", "no spaces"),
        ("https://example.com/\r\nX-Injected: 1", "no spaces or control"),
        ("https://exämple.com/", "ASCII"),
        ("https://example.com/#frag", "fragment"),
        ("https://example.com:99999/", "does not parse"),
        ("https://example.com/" + "a" * WEBHOOK_URL_CHARS, f"over {WEBHOOK_URL_CHARS}"),
        (42, "must be a string"),
    ],
)
def test_bad_webhook_urls_are_one_line_errors(url: object, words: str) -> None:
    with pytest.raises(ValidationError) as exc:
        check_webhook_url(url)
    assert words in str(exc.value) and "\n" not in str(exc.value)


def test_the_webhook_travels_in_the_message_and_is_checked_by_the_worker() -> None:
    msgs = build_messages(
        ["a", "b"], job_id=uuid.uuid4(), model="m", limits=LIMITS, webhook="https://h.example/x"
    )
    body = msgs[0].to_json()
    assert parse_message(body, limits=LIMITS).webhook == "https://h.example/x"
    # Without a webhook the message is unchanged (no key at all).
    plain = build_messages(["a"], job_id=uuid.uuid4(), model="m", limits=LIMITS)[0].to_json()
    assert "webhook" not in plain and parse_message(plain, limits=LIMITS).webhook is None
    with pytest.raises(ValidationError, match="message field 'webhook': .*credentials"):
        parse_message({**body, "webhook": "http://u:p@h/"}, limits=LIMITS)
    with pytest.raises(ValidationError, match="http or https"):
        build_messages(["a"], job_id=uuid.uuid4(), model="m", limits=LIMITS, webhook="ftp://h/")


def test_signature_verifies_only_the_exact_body_with_the_secret_and_a_fresh_time() -> None:
    body = event_body({"job_id": "j", "status": "done"})
    header = sign(SECRET, body, 1_000_000)
    # The documented construction: HMAC-SHA256(secret, "<t>." + body), hex.
    mac = hmac.new(SECRET, b"1000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1000000,v1={mac}"
    assert verify_signature(SECRET, body, header, now=1_000_010)
    assert not verify_signature(SECRET, body + b" ", header, now=1_000_010)  # body changed
    assert not verify_signature(b"other", body, header, now=1_000_010)  # wrong secret
    assert not verify_signature(SECRET, body, header, now=1_000_000 + 301)  # replayed later
    assert not verify_signature(SECRET, body, "v1=" + mac, now=1_000_010)  # no timestamp
    assert not verify_signature(SECRET, body, "t=1000010," + header[10:], now=1_000_010)


def test_event_body_is_compact_sorted_json() -> None:
    assert event_body({"b": 1, "a": "x"}) == b'{"a":"x","b":1}'


def test_channel_and_statuses() -> None:
    jid = uuid.UUID(int=1)
    assert finished_channel("textlstm", jid) == f"textlstm.finished.{jid}"
    assert set(FINAL_STATUSES) >= {"done", "failed", "partial", "expired"}


def test_allow_list_setting() -> None:
    hosts, nets = parse_allow_list(" 127.0.0.1, 10.0.0.0/8 ,hooks.internal,,::1 ")
    assert hosts == {"hooks.internal"}
    assert [str(n) for n in nets] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    assert parse_allow_list("") == (frozenset(), ())
    for bad in ("10.0.0.0/33", "a b", "http://x"):
        with pytest.raises(ValueError, match="neither a host name"):
            parse_allow_list(bad)


def test_event_message_is_the_documented_json() -> None:
    import json

    from textlstm.wire.events import event_message

    jid = uuid.uuid4()
    assert json.loads(event_message(jid, "partial")) == {
        "type": "job.finished",
        "job_id": str(jid),
        "status": "partial",
    }
