"""`TEXTLSTM_BROKER_TRANSPORT_OPTIONS` and what a `sentinel://` broker URL needs.

The transport options are a JSON object handed to kombu as Celery's `broker_transport_options`,
merged over the project's own (`worker.app`), so that a broker kombu supports but the project
cannot configure alone (Redis Sentinel: the master's name, the Sentinels' password) is reachable
by setting, not by editing code. kombu ignores an option it does not know and fails late, deep
in a connection, on one of the wrong type; so each option is checked here, when the settings are
read, against the table below, and a mistake is one line naming the variable:

- not JSON, or JSON but not an object;
- an option name nobody reads (a typo such as `mastername` would otherwise leave the worker
  failing with kombu's "'master_name' transport option must be specified");
- a value of a type the option cannot take (`"master_name": 1`).

`global_keyprefix` is refused: `status`, `jobs requeue`, backpressure and the dead-letter
commands read kombu's keys unprefixed (`textlstm.wire.redis_layout`); give each deployment its
own Redis database number instead.

`TEXTLSTM_BROKER_USE_SSL` (`parse_use_ssl`) is TLS to a Sentinel set's master, as Celery's
`broker_use_ssl`, checked the same way; certificates are verified unless it says otherwise.

The last part is the Sentinel URL: `sentinel://[:password@]host:port[/db];sentinel://…`, one
URL per Sentinel. As in kombu, the password and database of the URLs are the *Redis* master's
(given on the first URL, copied onto the others by `with_master_auth_on_every_url`); the
Sentinels' own password goes in `sentinel_kwargs`, and TLS to them too. Pure apart from
`probe_sentinels`, which asks the Sentinels (never the master) who the master is, and
`amqp_queue_depths`, `per_amqp_queue`, `amqp_unacked_counts` and `probe_amqp`, which talk to
RabbitMQ.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

T = TypeVar("T")

NUMBER = (int, float)

#: Options a textlstm deployment may set, with the JSON types each accepts (bool is refused
#: where a number is wanted, although Python counts it as an int). kombu's Redis and Sentinel
#: channels read them (kombu.transport.redis.Channel.from_transport_options); the last group is
#: the worker's own transport (worker/transport.py).
KNOWN: dict[str, tuple[type, ...]] = {
    # Sentinel (kombu.transport.redis.SentinelChannel)
    "master_name": (str,),
    "sentinel_kwargs": (dict,),
    "min_other_sentinels": (int,),
    "sentinel_fanout_compat": (bool,),
    # kombu's Redis channel
    "visibility_timeout": NUMBER,
    "unacked_restore_interval": NUMBER,
    "unacked_restore_throttle": NUMBER,
    "unacked_mutex_expire": NUMBER,
    "queue_order_strategy": (str,),
    "polling_interval": NUMBER,
    "socket_timeout": NUMBER,
    "socket_connect_timeout": NUMBER,
    "socket_keepalive": (bool,),
    "socket_keepalive_options": (dict,),
    "health_check_interval": (int,),
    "retry_on_timeout": (bool,),
    "max_connections": (int,),
    "client_name": (str,),
    "fanout_prefix": (bool, str),
    "fanout_patterns": (bool,),
    "priority_steps": (list,),
    "sep": (str,),
    "brpop_timeout": NUMBER,
    # the worker's transport (worker/transport.py)
    "idle_poll_interval": NUMBER,
    "max_pop": (int,),
    "max_pop_bytes": (int,),
    "max_deliveries": (int,),
    "dead_letter_max": (int,),
}
#: Options refused with the reason.
REFUSED = {
    "global_keyprefix": "is not supported: status, jobs requeue and backpressure read kombu's "
    "keys unprefixed; give the deployment its own Redis database (sentinel://…/1) instead",
    "dead_letter_key": "is the queue's (TEXTLSTM_QUEUE): set that instead",
    "deliveries_key": "is the project's own bookkeeping key and cannot be changed",
}
#: Keys inside an option's object whose values are secrets (never printed).
SECRET_KEYS = frozenset({"password", "ssl_password", "ssl_keyfile_password"})

_TYPE_NAMES = {str: "a string", int: "a whole number", float: "a number", bool: "true or false",
               dict: "a JSON object", list: "a JSON array"}  # fmt: skip


def _describe(types: tuple[type, ...]) -> str:
    names: list[str] = []
    for t in types:
        name = "a number" if t in NUMBER and float in types else _TYPE_NAMES[t]
        if name not in names:
            names.append(name)
    return " or ".join(names)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    for t, name in _TYPE_NAMES.items():
        if isinstance(value, t):
            return name
    return type(value).__name__


def _fits(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


_UNSET = object()


def _decoded(raw: Any, example: str) -> Any:
    """A JSON setting's value: _UNSET when unset or blank, the decoded JSON of a string (a
    ValueError of one line, showing `example`, when it is not JSON), else `raw` as given."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return _UNSET
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            f"give a JSON object such as {example}"
        ) from None


def parse_transport_options(raw: Any) -> dict[str, Any]:
    """`raw` (the variable's text, or an already decoded mapping) as a checked dict of kombu
    transport options. ValueError with one line, never echoing a value, on any mistake."""
    value = _decoded(raw, '{"master_name": "mymaster"}')
    if value is _UNSET:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(
            f"must be a JSON object of kombu transport options, got {_json_type(value)} "
            '(e.g. {"master_name": "mymaster"})'
        )
    out: dict[str, Any] = {}
    for name, option in value.items():
        if name in REFUSED:
            raise ValueError(f"option {name!r} {REFUSED[name]}")
        if name not in KNOWN:
            raise ValueError(
                f"unknown option {str(name)[:40]!r} (known: {', '.join(sorted(KNOWN))})"
            )
        if not _fits(option, KNOWN[name]):
            raise ValueError(
                f"option {name!r} must be {_describe(KNOWN[name])}, got {_json_type(option)}"
            )
        out[name] = option
    return out


def masked_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options with every secret (a password inside `sentinel_kwargs` or
    `socket_keepalive_options`) replaced by `***`, for logs, errors and `repr`."""

    def mask(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: "***" if k in SECRET_KEYS else mask(v) for k, v in value.items()}
        return value

    return {k: mask(v) for k, v in options.items()}


# -- TLS to the Redis master of a Sentinel set ---------------------------------------------

#: `TEXTLSTM_BROKER_USE_SSL` keys (Celery's `broker_use_ssl` for Redis) and their JSON types.
SSL_KEYS: dict[str, tuple[type, ...]] = {
    "ssl_cert_reqs": (str,),
    "ssl_ca_certs": (str,),
    "ssl_certfile": (str,),
    "ssl_keyfile": (str,),
    "ssl_check_hostname": (bool,),
}
CERT_REQS = ("required", "optional", "none")


def parse_use_ssl(raw: Any) -> dict[str, Any]:
    """`TEXTLSTM_BROKER_USE_SSL` as a checked dict; ValueError with one line on a mistake.
    Empty = no TLS. `ssl_cert_reqs` defaults to `required` (kombu's default for a bare
    `rediss://` is not to verify; textlstm never makes that choice silently)."""
    value = _decoded(raw, '{"ssl_ca_certs": "/etc/ssl/redis-ca.pem"}')
    if value is _UNSET:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"must be a JSON object of ssl_* options, got {_json_type(value)}")
    if not value:
        return {}
    out: dict[str, Any] = {}
    for name, option in value.items():
        if name not in SSL_KEYS:
            raise ValueError(
                f"unknown option {str(name)[:40]!r} (known: {', '.join(sorted(SSL_KEYS))})"
            )
        if not _fits(option, SSL_KEYS[name]):
            raise ValueError(
                f"option {name!r} must be {_describe(SSL_KEYS[name])}, got {_json_type(option)}"
            )
        out[name] = option
    reqs = out.setdefault("ssl_cert_reqs", "required")
    if reqs not in CERT_REQS:
        raise ValueError(f"option 'ssl_cert_reqs' must be one of {', '.join(CERT_REQS)}")
    return out


def ssl_context_options(use_ssl: Mapping[str, Any]) -> dict[str, Any]:
    """`use_ssl` as kombu and redis-py take it (`ssl_cert_reqs` as an `ssl` constant)."""
    import ssl

    reqs = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
    return {**use_ssl, "ssl_cert_reqs": reqs[str(use_ssl.get("ssl_cert_reqs", "required"))]}


# -- Sentinel URLs -----------------------------------------------------------------------------


def urls_of(broker_url: str) -> list[str]:
    """The `;`-separated URLs of a broker setting (Celery's failover list; for Sentinel, the
    Sentinels)."""
    return [u.strip() for u in broker_url.split(";") if u.strip()]


def is_sentinel(broker_url: str) -> bool:
    """True for a `sentinel://` broker URL (the first URL decides, as in kombu)."""
    urls = urls_of(broker_url)
    return bool(urls) and urls[0].lower().startswith("sentinel://")


def sentinel_target(broker_url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The Sentinels' (host, port) addresses, and the Redis master's connection arguments
    (`db`, `username`, `password`) that the URLs carry: kombu reads the first URL's, and so
    does this."""
    hosts: list[tuple[str, int]] = []
    master: dict[str, Any] = {}
    for n, url in enumerate(urls_of(broker_url)):
        parts = urlsplit(url)
        hosts.append((parts.hostname or "127.0.0.1", parts.port or 26379))
        if n == 0:
            db = parts.path.strip("/")
            master["db"] = int(db) if db.isdigit() else 0
            if parts.username:
                master["username"] = unquote(parts.username)
            if parts.password:
                master["password"] = unquote(parts.password)
    return hosts, master


def with_master_auth_on_every_url(broker_url: str) -> str:
    """A `sentinel://` list with the first URL's user, password and database copied onto every
    other URL that names none of its own (anything else is returned unchanged).

    kombu reads the master's credentials from the first URL when it connects, but when a
    connection breaks (a failover) Celery and kombu move on to the *next* URL of the list and
    take the credentials from that one: a URL without the password then reaches the master
    unauthenticated ("Authentication required") and the client only gets back in once the
    round-robin returns to the first URL, a retry interval or two later, with an error logged
    per URL. The documented form gives the password once, on the first URL, so the settings
    complete the others."""
    urls = urls_of(broker_url)
    if len(urls) < 2 or not is_sentinel(broker_url):
        return broker_url
    first = urlsplit(urls[0])
    userinfo = first.netloc.rpartition("@")[0] if "@" in first.netloc else ""
    out = [urls[0]]
    for url in urls[1:]:
        parts = urlsplit(url)
        netloc = parts.netloc
        if userinfo and "@" not in netloc:
            netloc = f"{userinfo}@{netloc}"
        path = parts.path if parts.path.strip("/") else first.path
        out.append(parts._replace(netloc=netloc, path=path).geturl())
    return ";".join(out)


def sentinel_problem(broker_url: str, options: Mapping[str, Any]) -> str | None:
    """What a Sentinel broker lacks in the settings (the one line to print), or None."""
    if not is_sentinel(broker_url):
        return None
    if not all(u.lower().startswith("sentinel://") for u in urls_of(broker_url)):
        return (
            "TEXTLSTM_BROKER_URL: a sentinel:// broker lists only sentinel:// URLs, one per "
            "Sentinel"
        )
    if not options.get("master_name"):
        return (
            "TEXTLSTM_BROKER_TRANSPORT_OPTIONS: a sentinel:// broker (TEXTLSTM_BROKER_URL) needs "
            'the name the Sentinels monitor its master under: {"master_name": "mymaster"}'
        )
    return None


def probe_sentinels(broker_url: str, options: Mapping[str, Any], timeout: float = 3.0) -> str:
    """Ask the Sentinels where the master named `master_name` is; return it as `host:port`.
    ConnectionError with one line (naming the settings, no password) when no Sentinel answers,
    or none of those that answer monitors that name: a configuration mistake or a Sentinel set
    that is down. A failover in progress passes: the Sentinels still know the name (and give
    the old address until the promotion), and clients retry until the new master answers."""
    from redis.exceptions import RedisError
    from redis.sentinel import Sentinel

    hosts, _ = sentinel_target(broker_url)
    kwargs = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        **dict(options.get("sentinel_kwargs") or {}),
    }
    sentinel = Sentinel(hosts, sentinel_kwargs=kwargs)
    name = str(options.get("master_name"))
    where = ", ".join(f"{h}:{p}" for h, p in hosts)
    answered, problems = 0, []
    try:
        for node in sentinel.sentinels:
            try:
                addr = node.sentinel_get_master_addr_by_name(name)
            except (RedisError, OSError) as exc:
                problems.append(" ".join(str(exc).split())[:160])
                continue
            answered += 1
            if addr:
                host = addr[0].decode() if isinstance(addr[0], bytes) else addr[0]
                return f"{host}:{addr[1]}"
    finally:
        for node in sentinel.sentinels:
            node.close()
    if answered:
        why = f"{answered} of {len(hosts)} Sentinel(s) answered but none monitors {name!r}"
    else:
        why = (
            f"none of the Sentinels ({where}) answered ({problems[0] if problems else 'no reply'})"
        )
    raise ConnectionError(
        f"cannot reach the Redis master through Sentinel: {why} (check TEXTLSTM_BROKER_URL and "
        f"master_name / sentinel_kwargs in TEXTLSTM_BROKER_TRANSPORT_OPTIONS{_tls_hint(problems)})"
    )


def _tls_hint(problems: list[str]) -> str:
    """Where TLS to the Sentinels is set, when their errors look like a TLS mismatch: a
    TLS-only Sentinel resets a plain connection ("Connection reset by peer", which alone says
    nothing about TLS), and a certificate the CA given does not verify says SSL."""
    tls_like = ("SSL", "certificate", "Connection reset by peer", "wrong version number")
    if not any(marker in p for p in problems for marker in tls_like):
        return ""
    return (
        '; TLS to the Sentinels is sentinel_kwargs {"ssl": true, "ssl_ca_certs": "<CA file>"}, '
        "to the master TEXTLSTM_BROKER_USE_SSL"
    )


# -- RabbitMQ (amqp://) ------------------------------------------------------------------------

#: Broker URL schemes served by kombu's py-amqp transport (RabbitMQ).
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")

#: The arguments every textlstm queue is declared with on RabbitMQ: a durable *quorum* queue
#: (Raft-replicated over the cluster's nodes; survives a node's loss once the cluster has three).
#: Quorum queues take no `x-max-priority`: priorities are the three queues
#: (`textlstm.wire.queues`), never per-message priorities. The three priority queues add the
#: poison-message limit and dead-lettering of `amqp_queue_arguments`; the dead-letter queue
#: itself is declared with these alone.
QUORUM_QUEUE_ARGUMENTS: dict[str, Any] = {"x-queue-type": "quorum"}

#: Transport options the project sets for amqp:// (kombu.transport.pyamqp): `confirm_publish`
#: makes every `basic_publish` wait for the broker's `basic.ack` (publisher confirms), so
#: `Client.submit` and the Producer report a job accepted only once RabbitMQ has it (for a
#: quorum queue: once a majority of its replicas has written it); a `basic.nack` or a lost
#: connection is an error, retried and then a BrokerError.
AMQP_TRANSPORT_OPTIONS: dict[str, Any] = {"confirm_publish": True}


def is_amqp(broker_url: str) -> bool:
    """True for an amqp://, amqps:// or pyamqp:// broker URL (the first URL decides)."""
    urls = urls_of(broker_url)
    return bool(urls) and urlsplit(urls[0]).scheme.lower() in AMQP_SCHEMES


def amqp_dead_letter_queue(base: str) -> str:
    """The dead-letter queue of `base` and its priority queues on RabbitMQ: the same name as
    the Redis dead-letter list (`<queue>.dead-letters`), and also the name of the direct
    exchange it is bound to (with its name as routing key)."""
    return f"{base}.dead-letters"


def amqp_queue_arguments(base: str, max_deliveries: int) -> dict[str, Any]:
    """The arguments of each priority queue of `base`, the ONE place producers and workers take
    them from: RabbitMQ refuses a second declaration whose arguments differ (PRECONDITION_FAILED),
    so both sides must build them here, from the same settings.

    - `x-delivery-limit`: `TEXTLSTM_WORKER_MAX_DELIVERIES`. A quorum queue counts a message's
      returns (a consumer that died or disconnected holding it, a requeue) in
      `x-delivery-count`; the worker quarantines a message delivered that many times before
      (`worker.strategy`: it records the reason on the job first), and RabbitMQ dead-letters one
      returned more times than this, should the quarantine itself never complete.
    - `x-dead-letter-exchange` / `-routing-key`: to the dead-letter queue
      (`amqp_dead_letter_queue`).
    - `x-dead-letter-strategy: at-least-once`: RabbitMQ (3.10+) keeps a message in the source
      queue until the dead-letter queue has confirmed it; the default, at-most-once, drops it
      if the dead-letter queue cannot take it. It needs `x-overflow: reject-publish` (the
      queue has no length limit, so nothing is refused for it).
    """
    dead = amqp_dead_letter_queue(base)
    return {
        **QUORUM_QUEUE_ARGUMENTS,
        "x-delivery-limit": int(max_deliveries),
        "x-dead-letter-exchange": dead,
        "x-dead-letter-routing-key": dead,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def amqp_queues(base: str, names: list[str], max_deliveries: int) -> list[Any]:
    """kombu Queues for `names` (priority queues of `base`) as textlstm declares them on
    RabbitMQ: durable quorum queues with `amqp_queue_arguments`, each bound to a direct
    exchange of its own name with its name as routing key (what Celery creates for a missing
    queue, so producers and workers of older versions route alike)."""
    from kombu import Exchange, Queue

    return [
        Queue(
            name,
            Exchange(name, type="direct", durable=True),
            routing_key=name,
            durable=True,
            queue_arguments=amqp_queue_arguments(base, max_deliveries),
        )
        for name in names
    ]


def amqp_dead_letter_queues(base: str) -> Any:
    """The kombu Queue of `base`'s dead-letter queue: durable quorum, bound to the direct
    exchange of its name (the dead-letter exchange of the priority queues). No delivery limit
    and no dead-lettering of its own: `textlstm-admin dead-letters` reads it by `basic.get`
    and puts the messages back, which a limit would count."""
    from kombu import Exchange, Queue

    dead = amqp_dead_letter_queue(base)
    return Queue(
        dead,
        Exchange(dead, type="direct", durable=True),
        routing_key=dead,
        durable=True,
        queue_arguments=dict(QUORUM_QUEUE_ARGUMENTS),
    )


def amqp_queue(base: str, name: str, max_deliveries: int) -> Any:
    """The kombu Queue producers publish to for the priority queue `name` of `base` (Celery
    declares it with these arguments before its first publish on a connection)."""
    return amqp_queues(base, [name], max_deliveries)[0]


def amqp_celery_config(queue: str | None, max_deliveries: int | None = None) -> dict[str, Any]:
    """The Celery settings that make the worker declare textlstm's queues as durable quorum
    queues on RabbitMQ: `queue`'s three priority queues (`textlstm.wire.queues`) in
    `task_queues`. The client app, shared by every queue on one broker, names none (None): it
    publishes with the kombu Queue of `amqp_queue`, which Celery declares as given, with the
    very same exchange, binding and arguments (checked in tests/unit/test_broker_options.py).
    Missing queues Celery would create by name (none of textlstm's) are quorum queues too."""
    config: dict[str, Any] = {
        "task_default_queue_type": "quorum",
        "task_create_missing_queue_type": "quorum",
    }
    if queue is not None:
        from textlstm.wire.queues import consume_order

        if max_deliveries is None:
            raise ValueError("the worker's queues need max_deliveries (x-delivery-limit)")
        config["task_queues"] = amqp_queues(queue, consume_order(queue), max_deliveries)
    return config


class QueueArgumentsMismatch(ConnectionError):
    """A queue exists on RabbitMQ with arguments other than this version declares."""


#: Where the migration is described (the one line names it).
MIGRATION_DOC = "docs/brokers.md, 'Changing the RabbitMQ queue arguments'"


def mismatch_line(queue: str, reply: str) -> str:
    """The one line for a queue RabbitMQ refused to declare again (PRECONDITION_FAILED):
    which queue, which argument (from RabbitMQ's own reply text), and what to do. Pure."""
    text = " ".join(str(reply).split())
    why = text.split("PRECONDITION_FAILED - ", 1)[-1][:200]
    return (
        f"RabbitMQ queue {queue!r} exists with other arguments than this version declares "
        f"({why}): drain it with the workers that declared it, delete it (rabbitmqctl "
        f"delete_queue {queue}) and start again ({MIGRATION_DOC})"
    )


def check_amqp_queues(
    broker_url: str,
    queues: Iterable[Any],
    transport_options: Mapping[str, Any] | None = None,
    *,
    create: bool = False,
    timeout: float = 5.0,
) -> None:
    """Declare each kombu Queue of `queues` (and its exchange and binding) as this version
    does, each on a channel of its own. A queue that does not exist yet is left alone unless
    `create` (it is created right by whoever declares it first); one that exists with other
    arguments (a deployment of an older version, or other TEXTLSTM_WORKER_MAX_DELIVERIES) is
    QueueArgumentsMismatch with `mismatch_line`, instead of PRECONDITION_FAILED in a traceback
    from inside Celery on the first publish or consume."""
    from amqp.exceptions import PreconditionFailed
    from kombu import Connection

    with Connection(
        broker_url, connect_timeout=timeout, transport_options=dict(transport_options or {})
    ) as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
        for queue in queues:
            if not create and not _exists(conn, queue.name):
                continue
            channel = conn.channel()
            try:
                queue(channel).declare()
            except PreconditionFailed as exc:
                raise QueueArgumentsMismatch(mismatch_line(queue.name, str(exc))) from None
            finally:
                close_quietly(channel)


def _exists(conn: Any, name: str) -> bool:
    """Whether the queue `name` exists (a passive declare, on a channel of its own: a missing
    queue closes the channel)."""
    from amqp.exceptions import NotFound

    channel = conn.channel()
    try:
        channel.queue_declare(queue=name, passive=True)
        return True
    except NotFound:
        return False
    finally:
        close_quietly(channel)


def close_quietly(channel: Any) -> None:
    """Close an AMQP channel the broker may already have closed (a failed passive declare)."""
    try:
        channel.close()
    except Exception:  # noqa: BLE001 - already closed by the broker
        pass


def amqp_queue_depths(
    broker_url: str,
    names: Iterable[str],
    transport_options: Mapping[str, Any] | None = None,
    *,
    timeout: float = 5.0,
) -> dict[str, int]:
    """Ready messages per queue (for `status` and backpressure), by passive declaration, one
    short-lived connection.

    A passive `queue.declare` returns the queue's `message_count`: messages *ready* (not yet
    delivered to a consumer), what Redis's `LLEN` counts. Messages delivered to a worker and
    not yet acked are not in it, and AMQP offers no count of them to a client (the management
    HTTP API has it: `amqp_unacked_counts`). A queue not declared yet (no producer or worker
    has used it) counts 0."""
    return per_amqp_queue(
        broker_url,
        names,
        lambda channel, name: int(channel.queue_declare(queue=name, passive=True).message_count),
        missing=0,
        transport_options=transport_options,
        timeout=timeout,
    )


def per_amqp_queue(
    broker_url: str,
    names: Iterable[str],
    read: Callable[[Any, str], T],
    *,
    missing: T,
    transport_options: Mapping[str, Any] | None = None,
    timeout: float = 5.0,
) -> dict[str, T]:
    """`read(channel, queue)` for each queue on one short-lived connection, each on a channel
    of its own, closed after it: a missing queue (`missing` stands for it) closes its channel,
    and closing a channel is what puts back the messages `basic.get` took on it."""
    from amqp.exceptions import NotFound
    from kombu import Connection

    out: dict[str, T] = {}
    with Connection(
        broker_url, connect_timeout=timeout, transport_options=dict(transport_options or {})
    ) as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
        for name in names:
            channel = conn.channel()
            try:
                out[name] = read(channel, name)
            except NotFound:
                out[name] = missing
            finally:
                try:
                    channel.close()
                except Exception:  # noqa: BLE001 - already closed by the broker
                    pass
    return out


def amqp_unacked_counts(
    management_url: str, broker_url: str, names: Iterable[str], *, timeout: float = 5.0
) -> dict[str, int]:
    """Messages delivered to a consumer and not yet acked, per queue, from the RabbitMQ
    management HTTP API (`GET /api/queues/<vhost>/<name>`, `messages_unacknowledged`), for
    `status` when `TEXTLSTM_RABBITMQ_MANAGEMENT_URL` is set.

    AMQP itself gives a client no unacked count, and the workers' replies to `status` count
    only what each has handed to its batcher (not what is still in transit to it, nor workers
    busy past the probe), so this API is the exact source. Its figures are the node's
    statistics, refreshed every `collect_statistics_interval` (5 s by default). A queue not
    declared yet counts 0. The vhost is the broker URL's. Any failure is a ConnectionError of
    one line naming the setting, never the password."""
    import base64
    import json as _json
    import urllib.error
    import urllib.request
    from urllib.parse import quote

    parts = urlsplit(management_url)
    where = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    base = f"{parts.scheme}://{where}{parts.path.rstrip('/')}"
    headers = {"Accept": "application/json"}
    if parts.username is not None:
        token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(token).decode()
    _, _, vhost = amqp_target(urls_of(broker_url)[0])

    def fail(why: str) -> ConnectionError:
        return ConnectionError(
            f"TEXTLSTM_RABBITMQ_MANAGEMENT_URL: cannot read unacked counts from the RabbitMQ "
            f"management API at {where} ({why})"
        )

    out: dict[str, int] = {}
    for name in names:
        url = f"{base}/api/queues/{quote(vhost, safe='')}/{quote(name, safe='')}"
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http(s) checked
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
                body = _json.loads(reply.read() or b"{}")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:  # no such queue (yet)
                out[name] = 0
                continue
            if exc.code == 401:
                raise fail("401: the user name or password is refused") from None
            raise fail(f"HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise fail(" ".join(str(reason).split())[:160] or type(exc).__name__) from None
        except ValueError:
            raise fail("the reply is not JSON: is this the management port?") from None
        out[name] = int(body.get("messages_unacknowledged") or 0)
    return out


def amqp_target(url: str) -> tuple[str, str, str]:
    """`host:port`, the user and the virtual host an amqp:// URL names (kombu's defaults:
    port 5672, or 5671 for amqps://; user `guest`; vhost `/`), never the password."""
    parts = urlsplit(url)
    port = parts.port or (5671 if parts.scheme.lower() == "amqps" else 5672)
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return f"{parts.hostname or 'localhost'}:{port}", unquote(parts.username or "guest"), vhost


def amqp_refusal(url: str, exc: BaseException, timeout: float) -> str:
    """Why an AMQP connection to `url` could not be opened, as one line naming the setting
    (pure: classifies py-amqp's and the socket's errors by their class and reply code)."""
    where, user, vhost = amqp_target(url)
    code = getattr(exc, "code", None) or getattr(exc, "reply_code", None)
    if code == 403:
        return (
            f"RabbitMQ at {where} refused the login of user {user!r} (ACCESS_REFUSED): check "
            "the user name and password in TEXTLSTM_BROKER_URL"
        )
    if code == 530:
        return (
            f"RabbitMQ at {where} has no virtual host {vhost!r} that user {user!r} may use "
            "(NOT_ALLOWED): check the vhost, the path of TEXTLSTM_BROKER_URL (`//` is the "
            "default vhost `/`)"
        )
    if isinstance(exc, TimeoutError) or "timed out" in str(exc):
        why = f"no answer within {timeout:g}s"
    elif isinstance(exc, ConnectionRefusedError) or "Connection refused" in str(exc):
        why = "connection refused"
    else:
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        why = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return (
        f"cannot reach RabbitMQ at {where} ({why}): check the host and port in TEXTLSTM_BROKER_URL"
    )


def probe_amqp(
    broker_url: str, options: Mapping[str, Any] | None = None, timeout: float = 3.0
) -> None:
    """Open (and close) one AMQP connection to the broker, so that a wrong vhost, a refused
    login or an unreachable host is one line at start-up (ConnectionError, naming
    TEXTLSTM_BROKER_URL, no password) instead of kombu's traceback after its retries, or a
    worker retrying for ever. With a `;` failover list any URL that answers passes; the first
    one's problem is reported."""
    from kombu import Connection

    first: str | None = None
    for url in urls_of(broker_url):
        conn = Connection(url, connect_timeout=timeout, transport_options=dict(options or {}))
        try:
            conn.connect()
            return
        except Exception as exc:  # noqa: BLE001 - every failure becomes the one line
            cause = (
                exc.__cause__ or exc.__context__
                if type(exc).__module__.startswith("kombu")
                else exc
            )
            first = first or amqp_refusal(url, cause or exc, timeout)
        finally:
            conn.release()
    raise ConnectionError(first or "TEXTLSTM_BROKER_URL: no amqp:// URL given")


def amqp_topology(base: str, max_deliveries: int) -> list[Any]:
    """Every queue textlstm declares on RabbitMQ for `base`: its three priority queues and its
    dead-letter queue (what `probe_broker` checks at start-up)."""
    from textlstm.wire.queues import consume_order

    return [*amqp_queues(base, consume_order(base), max_deliveries), amqp_dead_letter_queues(base)]


def probe_broker(
    broker_url: str,
    options: Mapping[str, Any],
    timeout: float = 3.0,
    *,
    queues: Iterable[Any] = (),
    create: bool = False,
) -> None:
    """Whether the broker answers, asked once at start-up by every command: the Sentinels on
    `sentinel://` (`probe_sentinels`), an AMQP handshake on amqp:// (`probe_amqp`); nothing
    on plain Redis, whose client already fails fast with a short line. On amqp:// the
    `queues` that exist (`amqp_topology`) are declared as this version declares them, so a
    queue declared by an older version is one line (`QueueArgumentsMismatch`); with `create`
    (the worker) the missing ones are declared too. ConnectionError with one line naming the
    setting or the queue."""
    if is_sentinel(broker_url):
        probe_sentinels(broker_url, options, timeout)
    elif is_amqp(broker_url):
        probe_amqp(broker_url, options, timeout)
        queues = list(queues)
        if queues:
            check_amqp_queues(broker_url, queues, options, create=create, timeout=timeout)
