"""Completion events: the final job statuses, the Redis channel a job's final event is published
on, the webhook URL rules checked at submit, and the webhook signature.

Pure functions only (no Redis client, no SQL, no HTTP), shared by the producer (which validates
a webhook URL before anything is sent, and waits on the channel), the worker (which publishes
and delivers) and a receiver (which verifies the signature with `verify_signature`).

Signature scheme (as Stripe's and GitHub's): the header

    X-Textlstm-Signature: t=1733450000,v1=<64 hex digits>

holds the Unix time of the attempt and HMAC-SHA256(secret, f"{t}." + body) in hex, over the
exact body bytes. A receiver recomputes it and refuses a timestamp older than a few minutes
(replay). docs/notify.md has a stand-alone verification snippet.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from textlstm.errors import ValidationError

#: The statuses a job never leaves: reaching one of them publishes the job's one final event.
#: The one list of them (store/models.py and the client read it from here).
FINAL_STATUSES: tuple[str, ...] = ("done", "failed", "partial", "expired", "cancelled")

#: Longest webhook URL accepted at submit (and the jobs.webhook_url column's size).
WEBHOOK_URL_CHARS = 2048
SIGNATURE_HEADER = "X-Textlstm-Signature"
#: The job id, so a receiver can deduplicate retried deliveries.
DELIVERY_HEADER = "X-Textlstm-Delivery"
EVENT_TYPE = "job.finished"
#: How old a signature's timestamp may be before `verify_signature` refuses it.
SIGNATURE_TOLERANCE_S = 300


def finished_channel(queue: str, job_id: uuid.UUID | str) -> str:
    """The Redis pub/sub channel a job's final event is published on (scoped by the queue
    setting, like the dead-letter list, so deployments sharing a Redis stay apart)."""
    return f"{queue}.finished.{job_id}"


def event_message(job_id: uuid.UUID | str, status: str) -> str:
    """The pub/sub message of a job's final event (compact JSON; built by hand: a UUID and a
    status need no escaping, and json.dumps per event was a third of the publish time of a
    batch of 1,024 one-text jobs)."""
    return f'{{"type":"{EVENT_TYPE}","job_id":"{job_id}","status":"{status}"}}'


def publish_finished(client: Any, queue: str, events: Iterable[tuple[uuid.UUID | str, str]]) -> int:
    """PUBLISH the final event of each (job id, status) on its channel, in one pipelined round
    trip of a redis-py `client`; return how many. For whoever ended the jobs, after its commit:
    the worker (textlstm/serving/notify.py), or a cancel."""
    pipe = client.pipeline(transaction=False)
    n = 0
    for job_id, status in events:
        pipe.execute_command(
            "PUBLISH", finished_channel(queue, job_id), event_message(job_id, status)
        )
        n += 1
    if n:
        pipe.execute()
    return n


def event_body(event: Mapping[str, Any]) -> bytes:
    """The exact bytes sent (and signed): compact, key-sorted UTF-8 JSON."""
    return json.dumps(dict(event), separators=(",", ":"), sort_keys=True).encode()


def check_webhook_url(url: Any) -> str | None:
    """A webhook URL as a producer may give it: http or https, a host, no user or password, no
    fragment, at most WEBHOOK_URL_CHARS. One-line ValidationError otherwise. Where it may point
    (no internal addresses) is decided at delivery, against the worker's allow-list."""
    if url is None:
        return None
    if not isinstance(url, str):
        raise ValidationError(f"webhook URL must be a string, got {type(url).__name__}")
    if len(url) > WEBHOOK_URL_CHARS:
        raise ValidationError(f"webhook URL is {len(url)} characters, over {WEBHOOK_URL_CHARS}")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url) or not url.isascii():
        raise ValidationError("webhook URL must be ASCII with no spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValidationError(f"webhook URL does not parse: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValidationError(f"webhook URL must be http or https, got {parts.scheme or 'none'!r}")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValidationError("webhook URL must not contain credentials (user:password@)")
    if not parts.hostname:
        raise ValidationError("webhook URL has no host")
    if parts.fragment:
        raise ValidationError("webhook URL must not have a #fragment")
    if port == 0:
        raise ValidationError("webhook URL port must be 1..65535")
    return url


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_allow_list(value: str) -> tuple[frozenset[str], tuple[Network, ...]]:
    """The webhook allow-list setting: (host names, networks). Entries are separated by commas;
    an address is a one-address network. ValueError names a bad entry."""
    hosts: set[str] = set()
    nets: list[Network] = []
    for raw in value.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        try:
            nets.append(ipaddress.ip_network(entry, strict=False))
            continue
        except ValueError:
            pass
        if "/" in entry or not all(part.replace("-", "").isalnum() for part in entry.split(".")):
            raise ValueError(f"{entry!r} is neither a host name, an address nor a network")
        hosts.add(entry)
    return frozenset(hosts), tuple(nets)


def url_origin(url: str) -> str:
    """A webhook URL as logs and `status` show it: scheme, host and port (a path or query may
    hold a token)."""
    parts = urlsplit(url)
    return (
        f"{parts.scheme}://{parts.netloc}/…"
        if (parts.path not in ("", "/") or parts.query)
        else url
    )


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The signature header's value for `body` sent at `timestamp` (Unix seconds)."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(
    secret: bytes,
    body: bytes,
    header: str,
    *,
    tolerance_s: float = SIGNATURE_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True when `header` signs exactly `body` with `secret` and is at most `tolerance_s` old
    (constant-time comparison). What a receiver runs on each request."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(key, []).append(value)
    try:
        ts = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    expected = sign(secret, body, ts).partition(",v1=")[2]
    return any(hmac.compare_digest(expected, v) for v in fields.get("v1", []))
