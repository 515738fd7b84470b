"""Where kombu keeps a queue's messages in Redis, and how to read them without Celery.

This is the one description of that layout in the project; the worker's transport
(`worker/transport.py`) and the operations commands (status, `jobs requeue`, `dead-letters`)
name their keys through it. The layout belongs to kombu's Redis transport (5.7):

- a queue is a list named after it; a message published with a kombu priority goes to a
  sibling list `<queue>\\x06\\x16<step>` (`PRIORITY_STEPS`);
- a message delivered to a worker and not yet acked is a field of the `unacked` hash
  (tag -> `[payload, exchange, routing key]`), with its delivery time in `unacked_index`;
- a stored message is a JSON object whose `body` is the Celery protocol-2 body
  `[args, kwargs, embed]`, base64-encoded when `properties.body_encoding` says so.

Ours, next to kombu's: the per-message delivery counts (`DELIVERIES_KEY`), the dead-letter
list of each queue (`dead_letter_key`) and the set of cancelled jobs of each queue
(`cancelled_key`). Only the functions that take a Redis client do I/O, and payloads are decoded
as JSON only, never unpickled.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from typing import Any

from textlstm.broker_options import (
    is_sentinel,
    probe_sentinels,
    sentinel_target,
    ssl_context_options,
)

#: kombu's hash of delivered, unacked messages, shared by every queue of the database.
UNACKED_KEY = "unacked"
#: The sibling lists of a queue for kombu's per-message priority steps ("" is the queue itself).
PRIORITY_STEPS = ("", "\x06\x163", "\x06\x166", "\x06\x169")
#: Our hash of delivery counts (tag -> times taken), for the poison-message quarantine.
DELIVERIES_KEY = "unacked_deliveries"


def dead_letter_key(queue: str) -> str:
    """The Redis list holding the dead letters of `queue` and its priority queues."""
    return f"{queue}.dead-letters"


def cancelled_key(queue: str) -> str:
    """The Redis sorted set of cancelled job ids (member: the id, score: when it was cancelled,
    Unix seconds) for the workers of `queue` and its priority queues."""
    return f"{queue}.cancelled"


def retention_lease_key(queue: str) -> str:
    """The lease a worker takes before its periodic purge (textlstm/ops/retention.py): one
    purge per interval across the fleet of this queue."""
    return f"{queue}.retention-lease"


def priority_lists(queue: str) -> list[str]:
    """Every Redis list that holds messages of `queue`."""
    return [queue + step for step in PRIORITY_STEPS]


def task_argument(payload: Any) -> Any:
    """The first positional argument of the Celery task inside a stored kombu message (our
    textlstm message), or None when it cannot be read. Never raises: callers keep the raw
    entry when the message is unreadable."""
    try:
        body = payload["body"]
        if base64_body := payload["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body, validate=True)
        return json.loads(body if base64_body else body.encode())[0][0]
    except Exception:  # noqa: BLE001 - unreadable: the caller still holds the entry
        return None


def loads(raw: bytes | str | None) -> Any:
    """A stored entry parsed as JSON, or None."""
    try:
        return json.loads(raw or "")
    except (ValueError, RecursionError):
        return None


# -- Redis I/O (status probes, recovery, dead-letter admin) -----------------------------------


def redis_client(  # type: ignore[no-untyped-def]
    broker_url: str,
    transport_options: Mapping[str, Any] | None = None,
    use_ssl: Mapping[str, Any] | None = None,
    *,
    timeout: float = 5,
):
    """A short-timeout redis-py client for the broker (a status probe must not hang).

    The one way the project opens a raw connection to the broker (status depths, `jobs
    requeue`, backpressure, the dead-letter commands), so that all of them understand a
    `sentinel://` URL as kombu does: the client asks the Sentinels for the current master on
    every new connection (redis-py's `Sentinel.master_for`), and so follows a failover like
    the workers and producers do. `transport_options` are the settings' (master_name,
    sentinel_kwargs, min_other_sentinels); `use_ssl` is `broker_use_ssl` (TLS to the master).
    """
    import redis

    timeouts = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if not is_sentinel(broker_url):
        return redis.Redis.from_url(broker_url, **timeouts)
    from redis.sentinel import Sentinel

    options = dict(transport_options or {})
    # A Sentinel set that does not answer is one line (ConnectionError, an OSError) rather
    # than redis-py's MasterNotFoundError, which holds the repr of every Sentinel client.
    try:
        probe_sentinels(broker_url, options)
    except ConnectionError as exc:  # as redis-py's own error: callers handle RedisError
        raise redis.exceptions.ConnectionError(str(exc)) from None
    hosts, master = sentinel_target(broker_url)
    sentinel = Sentinel(
        hosts,
        min_other_sentinels=int(options.get("min_other_sentinels") or 0),
        sentinel_kwargs={**timeouts, **dict(options.get("sentinel_kwargs") or {})},
        **timeouts,
    )
    tls = {"ssl": True, **ssl_context_options(use_ssl)} if use_ssl else {}
    return sentinel.master_for(str(options.get("master_name")), **master, **timeouts, **tls)


def broker_client(settings: Any, *, timeout: float = 5):  # type: ignore[no-untyped-def]
    """`redis_client` for the broker of `settings` (textlstm.settings.Settings), with its
    transport options and TLS, so a caller cannot forget them on a `sentinel://` broker."""
    return redis_client(
        settings.broker_url,
        settings.broker_transport_options,
        settings.broker_use_ssl,
        timeout=timeout,
    )


def is_redis_url(url: str) -> bool:
    """Whether `redis_client` can open `url` (what the worker's cancel check and the final
    events need): Redis, over TCP, TLS, a Unix socket or a Sentinel set."""
    return url.startswith(("redis://", "rediss://", "unix://", "sentinel://"))


def queue_depths(client: Any, names: Iterable[str]) -> dict[str, int]:
    """Messages waiting (not yet delivered to a worker) in each queue, in one round trip,
    priority-step lists included."""
    names = list(names)
    pipe = client.pipeline(transaction=False)
    for name in names:
        for key in priority_lists(name):
            pipe.llen(key)
    counts = pipe.execute()
    steps = len(PRIORITY_STEPS)
    return {name: sum(counts[i * steps : (i + 1) * steps]) for i, name in enumerate(names)}


def unacked_count(client: Any) -> int:
    """Messages delivered to some worker and not yet acked: buffered or in a batch being
    committed."""
    return int(client.hlen(UNACKED_KEY))


def mark_cancelled(client: Any, queue: str, job_id: str, *, now: float, keep_s: float) -> None:
    """Tell the workers of `queue` that `job_id` is cancelled (idempotent), and forget ids
    cancelled more than `keep_s` ago, in one round trip."""
    key = cancelled_key(queue)
    pipe = client.pipeline(transaction=True)
    pipe.zadd(key, {job_id: now})
    pipe.zremrangebyscore(key, "-inf", now - keep_s)
    pipe.execute()


def cancelled_job_ids(client: Any, queue: str) -> list[str]:
    """Every job id the set of `queue` holds (one round trip; the set is trimmed at each
    cancel, so it holds the cancellations of the last `cancel_keep_s`)."""
    return [
        m.decode() if isinstance(m, bytes) else m
        for m in client.zrange(cancelled_key(queue), 0, -1)
    ]
