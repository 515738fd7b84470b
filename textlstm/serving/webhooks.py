"""Webhook delivery: a sender thread per worker process, off the micro-batch path.

Why a thread fed from SQL (and not a Celery task on its own queue, or sends in the batch):

- the batch path only records a `pending` delivery in the transaction that makes the job final
  (store/events.py) and, after the commit, sets an Event (`nudge`): it never waits on the
  network, so a receiver that is down or slow cannot slow a micro-batch;
- the work list is the `webhook_deliveries` table itself, so nothing is lost when a worker
  stops: any worker's sender claims due deliveries (`claim_due`: the attempt is counted and the
  next one pushed a lease ahead first, so two senders never send the same attempt, and one that
  dies mid-attempt leaves it to be retried when the lease ends), including retries and those a
  stopped worker left. The wake-up is a single Event, so the hand-over is bounded by nature;
- a second Celery queue would need the worker's custom consumer (worker/strategy.py) to route
  a second task type, and Redis to hold what SQL already holds.

One thread per worker process sends one delivery at a time, each attempt bounded by
`webhook_timeout_s`; failures are retried with exponential backoff and jitter up to
`webhook_max_attempts`.

Each attempt resolves the URL's host and refuses it unless every address it connects to is
public or allowed by `webhook_allow` (`check_address`), then connects to that exact address
(the Host header and TLS name stay the URL's host), so a name that re-resolves to an internal
address between the check and the connection (DNS rebinding) cannot get through. Redirects are
never followed (a 3xx is a failed delivery). The signing secret is only ever used to compute
the header: it is not logged, and the delivery record holds the status code or a one-line error.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session, sessionmaker

from textlstm.store.events import Claimed, claim_due, record_attempt
from textlstm.wire.events import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    Network,
    check_webhook_url,
    event_body,
    parse_allow_list,
    sign,
)
from textlstm.wire.events import url_origin as where

log = logging.getLogger(__name__)

#: Most of a receiver's response body read (and then dropped): a receiver cannot make the
#: sender hold a large reply.
MAX_RESPONSE_BYTES = 64 * 1024
#: Status codes worth retrying besides 5xx: the receiver asked for time.
RETRY_CODES = frozenset({408, 425, 429})


class Refused(Exception):
    """The URL's host resolves to an address the allow-list does not allow (never retried)."""


def backoff_s(attempt: int, *, initial: float, maximum: float, rand: float) -> float:
    """Seconds to wait after failed attempt number `attempt` (1 for the first): `initial`
    doubled per attempt, capped at `maximum`, times a jitter factor in [0.5, 1) from `rand`
    in [0, 1) so that receivers coming back are not hit by every sender at once."""
    base = min(maximum, initial * 2 ** (attempt - 1))
    return base * (0.5 + rand / 2)


def _plain(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Any:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return ip


def address_allowed(
    address: str, host: str, allow: tuple[frozenset[str], tuple[Network, ...]]
) -> bool:
    """True when a webhook may connect to `address` (a resolved IP of `host`): the host name is
    allowed, or the address is in an allowed network, or it is a public unicast address."""
    hosts, nets = allow
    if host.lower().rstrip(".") in hosts:
        return True
    ip = _plain(ipaddress.ip_address(address.split("%", 1)[0]))
    if any(ip in net for net in nets if net.version == ip.version):
        return True
    return bool(ip.is_global) and not ip.is_multicast


def check_address(
    host: str,
    port: int,
    allow: tuple[frozenset[str], tuple[Network, ...]],
    resolve: Callable[..., Any] = socket.getaddrinfo,
) -> str:
    """Resolve `host` and return the address to connect to; Refused unless every address it
    resolves to is allowed (a name with one internal address among public ones is refused: a
    retry could connect to that one)."""
    try:
        infos = resolve(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ConnectionError(f"cannot resolve {host}: {exc}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise ConnectionError(f"cannot resolve {host}")
    bad = [a for a in addresses if not address_allowed(a, host, allow)]
    if bad:
        raise Refused(
            f"{host} resolves to {bad[0]}, an internal address that TEXTLSTM_WEBHOOK_ALLOW "
            "does not allow"
        )
    return str(addresses[0])


@dataclass(frozen=True)
class Attempt:
    """What one POST did: the status code (None if no response) or a one-line error."""

    status_code: int | None
    error: str | None
    retryable: bool

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout_s: float,
    allow: tuple[frozenset[str], tuple[Network, ...]],
    resolve: Callable[..., Any] = socket.getaddrinfo,
) -> Attempt:
    """POST `body` to `url` once, over a connection to the address `check_address` approved;
    no redirect followed, no retry here."""
    import urllib3

    try:
        check_webhook_url(url)
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = check_address(host, port, allow, resolve)
    except Refused as exc:
        return Attempt(None, f"refused: {exc}", retryable=False)
    except ConnectionError as exc:
        return Attempt(None, str(exc), retryable=True)
    except Exception as exc:  # noqa: BLE001 - a URL that no longer validates
        return Attempt(None, f"refused: {exc}", retryable=False)
    timeout = urllib3.Timeout(connect=timeout_s, read=timeout_s)
    pool: urllib3.HTTPConnectionPool
    if parts.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            address, port, timeout=timeout, retries=False, maxsize=1,
            server_hostname=host, assert_hostname=host, cert_reqs="CERT_REQUIRED",
        )  # fmt: skip
    else:
        pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_port = port == (443 if parts.scheme == "https" else 80)
    host_header = host if ":" not in host else f"[{host}]"
    if not default_port:
        host_header += f":{port}"
    started = time.monotonic()
    try:
        resp = pool.urlopen(
            "POST",
            path,
            body=body,
            headers={**headers, "Host": host_header},
            redirect=False,
            retries=False,
            preload_content=False,
            assert_same_host=False,
        )
        try:
            resp.read(MAX_RESPONSE_BYTES)
        finally:
            resp.release_conn()
    except urllib3.exceptions.HTTPError as exc:
        took = time.monotonic() - started
        reason = type(getattr(exc, "reason", None) or exc).__name__
        return Attempt(None, f"no response after {took:.1f}s ({reason})", retryable=True)
    finally:
        pool.close()
    code = resp.status
    if 200 <= code < 300:
        return Attempt(code, None, retryable=False)
    if 300 <= code < 400:
        return Attempt(code, f"HTTP {code}: redirects are not followed", retryable=False)
    retry = code >= 500 or code in RETRY_CODES
    return Attempt(code, f"HTTP {code}", retryable=retry)


class WebhookSender:
    """Delivers pending webhooks from SQL in a daemon thread (see the module docstring)."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        *,
        secret: bytes | None,
        allow: str = "",
        timeout_s: float = 5.0,
        max_attempts: int = 8,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 300.0,
        sweep_interval_s: float = 5.0,
        batch: int = 1,
        rand: Callable[[], float] = random.random,
        resolve: Callable[..., Any] = socket.getaddrinfo,
    ) -> None:
        self.session_factory = session_factory
        self._secret = secret
        self.allow = parse_allow_list(allow)
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.sweep_interval_s = sweep_interval_s
        self.batch = batch
        self.rand = rand
        self.resolve = resolve
        #: A lease longer than the attempts of one claim: connect + read timeouts (and the
        #: resolver's) per delivery, and slack. Claims are one delivery at a time by default,
        #: so a slow receiver cannot make the rest of a claimed set outlive its lease and be
        #: sent twice by another sender.
        self.lease = timedelta(seconds=batch * (3 * timeout_s) + 10)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, session_factory: sessionmaker[Session], settings: Any) -> WebhookSender:
        secret = settings.webhook_secret
        return cls(
            session_factory,
            secret=secret.get_secret_value().encode() if secret is not None else None,
            allow=settings.webhook_allow,
            timeout_s=settings.webhook_timeout_s,
            max_attempts=settings.webhook_max_attempts,
            backoff_initial_s=settings.webhook_backoff_initial_s,
            backoff_max_s=settings.webhook_backoff_max_s,
            sweep_interval_s=settings.webhook_sweep_interval_s,
        )

    def __repr__(self) -> str:  # never the secret
        return f"WebhookSender(allow={self.allow!r}, timeout_s={self.timeout_s})"

    # -- the thread ----------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="webhook-sender", daemon=True)
            self._thread.start()

    def nudge(self) -> None:
        """Deliveries are due now (called after a commit that recorded some): never blocks."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.sweep_interval_s)
            self._wake.clear()
            try:
                while not self._stop.is_set() and self.run_once():
                    pass
            except Exception as exc:  # noqa: BLE001 - the database may be down: sweep later
                log.warning("webhook sender: %s; retrying in %gs", exc, self.sweep_interval_s)

    # -- one round -----------------------------------------------------------------------

    def run_once(self, now: datetime | None = None) -> int:
        """Claim the due deliveries (up to `batch`), attempt each once and record the
        outcomes; return how many were attempted."""
        with self.session_factory.begin() as session:
            claimed = claim_due(
                session=session,
                now=now or datetime.now(UTC),
                lease=self.lease,
                limit=self.batch,
            )
        for claim in claimed:
            self.deliver(claim)
        return len(claimed)

    def deliver(self, claim: Claimed) -> Attempt:
        if self._secret is None:
            attempt = Attempt(None, "not sent: TEXTLSTM_WEBHOOK_SECRET is not set", False)
        else:
            body = event_body(claim.payload)
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "textlstm-webhook/1",
                SIGNATURE_HEADER: sign(self._secret, body, int(time.time())),
                DELIVERY_HEADER: str(claim.job_id),
            }
            attempt = post(
                claim.url,
                body,
                headers,
                timeout_s=self.timeout_s,
                allow=self.allow,
                resolve=self.resolve,
            )
        self._record(claim.job_id, claim.url, claim.attempt, attempt)
        return attempt

    def _record(self, job_id: uuid.UUID, url: str, number: int, attempt: Attempt) -> None:
        now = datetime.now(UTC)
        retry_at = None
        if not attempt.delivered and attempt.retryable and number < self.max_attempts:
            delay = backoff_s(
                number, initial=self.backoff_initial_s, maximum=self.backoff_max_s,
                rand=self.rand(),
            )  # fmt: skip
            retry_at = now + timedelta(seconds=delay)
        with self.session_factory.begin() as session:
            record_attempt(
                session=session,
                job_id=job_id,
                now=now,
                status_code=attempt.status_code,
                error=attempt.error,
                delivered=attempt.delivered,
                retry_at=retry_at,
            )
        if attempt.delivered:
            log.info("webhook for job %s delivered to %s (attempt %d)", job_id, where(url), number)
        elif retry_at is not None:
            log.warning(
                "webhook for job %s to %s: attempt %d failed (%s); retrying at %s",
                job_id, where(url), number, attempt.error, retry_at.isoformat(timespec="seconds"),
            )  # fmt: skip
        else:
            log.error(
                "webhook for job %s to %s failed for good after %d attempt(s): %s",
                job_id, where(url), number, attempt.error,
            )  # fmt: skip
