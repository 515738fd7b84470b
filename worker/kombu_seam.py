"""The one module of the worker that touches kombu's and Celery's private names.

The transport (`worker.transport`) and the micro-batching strategy (`worker.strategy`) need a
few hooks that neither library documents: kombu's Redis channel sends and reads its pop in two
private methods, and Celery hands messages to a task's strategy through an undocumented call.
Everything of that kind is here, behind small public methods and functions, so that a kombu or
Celery release can only break the worker in this file, and `check` can say before the worker
consumes whether the installed releases still have every name and signature used below.

Relied on, and checked by `check` (names as `NEEDS` spells them: redis.X, virtual.X and
Message are kombu.transport.redis.X, kombu.transport.virtual.X and kombu.message.Message; Task,
Consumer, consumer.Tasks and worker.state are celery.app.task.Task,
celery.worker.consumer.Consumer, celery.worker.consumer.tasks.Tasks and celery.worker.state;
parameters where this module overrides or calls them):

kombu 5.7.x (`kombu.transport.redis`, `.virtual`, `kombu.message`):
- redis.Channel._brpop_start(timeout): overridden; the poller sends a pop through it.
- redis.Channel._brpop_read(**options): overridden; the poller reads the pop's reply with it.
- redis.Channel._get(queue): overridden; the synchronous path (basic_get).
- redis.Channel._in_poll: set while a pop is in flight (the poller pauses and health-checks it).
- redis.Channel._brpop_sent_at: when the pop was sent (kombu 5.7's stale-BRPOP check).
- redis.Channel._flush_brpop_reauth(): called once a reply is read (kombu 5.7's re-auth).
- redis.Channel._queue_cycle: set by redis.Channel.__init__; the queues in consuming order.
- redis.Channel._q_for_pri(queue, pri): the Redis key of a queue at one priority step.
- redis.Channel._maybe_update_queues_expire(client, queue): what kombu's `_get` does after.
- redis.QoS._remove_from_indices(delivery_tag, pipe): the unacked records of one delivery.
- redis.QoS.append(message, delivery_tag), redis.QoS.ack(delivery_tag),
  redis.QoS.reject(delivery_tag, requeue): overridden (public names, but the way kombu calls
  them is not a documented contract).
- virtual.QoS.append(message, delivery_tag), virtual.QoS.ack(delivery_tag): called on a Redis
  QoS to do kombu's local bookkeeping (prefetch) without the Redis round trip.
- virtual.Transport._deliver(message, queue): hands a payload to the queue's consumer.
- virtual.Message._raw: set by virtual.Message.__init__; the payload as it came off Redis.
- virtual.QoS._delivered: set by virtual.QoS.__init__; the deliveries held locally
  (`drop_held`, when the connection to restore them on is gone).
- redis.QoS.restore_unacked(client): overridden (skipped when the connection is gone).
- Message._state: set by kombu.message.Message.__init__; "ACK" once acked (acks done here, in
  bulk, rather than by Message.ack).
- transport.TRANSPORT_ALIASES: kombu's scheme -> transport table. `Connection.switch(conn_str)`
  (Celery's move to the next URL of a `;` failover list, i.e. every reconnection on a
  `sentinel://` list) re-reads the transport from the URL's scheme and drops the one the
  configuration named: the worker would go on with kombu's own BRPOP transport. In a worker
  process `keep_transport_on_switch` points the scheme at ours, and forgets the class
  transport._transport_cache may already hold for it.
- redis.SentinelChannel._get_pool(asynchronous), redis.SentinelChannel._sentinel_managed_pool
  (asynchronous), redis.SentinelChannel.connection_class: not called here, but
  `worker.transport.SentinelChannel` puts our channel before kombu's Sentinel channel in its
  bases and relies on these to be what builds its connection pool (sentinel-managed
  connections that ask the Sentinels for the master on every connect, so a failover is
  followed). `SENTINEL_OPTIONS` (master_name, sentinel_kwargs, ...) is read from that class.

Celery 5.x:
- Task.start_strategy(app, consumer, **kwargs): calls `Task.Strategy(task, app, consumer)`. The
  handler the strategy returns is called with the kombu message first; that call is inside
  Celery's consumer and not checkable here (tests/e2e covers it).
- Consumer.timer: set by Consumer.__init__; the event loop's timer (batch deadlines).
- consumer.Tasks.task_consumer: set by consumer.Tasks.start; the queues consumed, and on
  amqp:// the kombu Consumer whose consumers `consume_with_prefetch` cancels and starts again
  (with kombu's public Consumer.cancel(), .qos() and .consume(); tests/worker/
  test_amqp_prefetch.py and tests/faults/test_amqp_poison.py cover the call on a real node).
- worker.state.should_stop, worker.state.should_terminate: set when a stop was requested.

Not a library name, but kept here with them: the strategy's state rides on the task object as
`task._batching` (Celery instantiates a task once per process).

`worker.guards.RefuseUnfitKombu` runs `check` when the worker is built and stops it with one
line naming the release it needs. To upgrade kombu: read the diff of the names above between
the two releases, adapt this module, update `KOMBU_SERIES` and the pin in pyproject.toml, and
run tests/worker/test_kombu_seam.py, tests/worker/test_transport.py and the fault tests.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import QoS as VirtualQoS

#: The kombu minor release the names above were read from (pyproject.toml pins the same).
KOMBU_SERIES = "5.7"
#: The Celery releases the Celery names above hold for.
CELERY_SERIES = "5"


# -- kombu: the Redis channel's pop --------------------------------------------------------


class PopChannel(kombu_redis.Channel):
    """kombu's Redis channel with its private pop hooks turned into public methods, which
    `worker.transport.Channel` implements: `pop_command` (what to send to take from the
    queues) and `read_pop` (read its reply and hand the messages over, or raise `Empty`) for
    the event loop; `get_command` and `read_get` for the synchronous path. kombu's bookkeeping
    around them (the in-flight marker, the send time, the re-auth flush, queue expiry) stays
    as kombu does it."""

    def pop_command(self, queues: list[str]) -> list[Any]:
        """The command (a list of arguments) that takes from `queues`, in this order."""
        raise NotImplementedError

    def read_pop(self, **options: Any) -> bool:
        """Read the reply of the command `pop_command` sent; True once a message went to a
        consumer (else raise `Empty`)."""
        raise NotImplementedError

    def get_command(self, queue: str) -> list[Any]:
        """The command that takes one message of `queue` (the synchronous path)."""
        raise NotImplementedError

    def read_get(self, reply: Any) -> dict[str, Any]:
        """The payload of the message `get_command`'s reply holds (else raise `Empty`)."""
        raise NotImplementedError

    def _brpop_start(self, timeout: float | None = None) -> None:
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        conn = self.client.connection
        args = self.pop_command(queues)
        self._in_poll = conn
        self._brpop_sent_at = time.monotonic()
        conn.send_command(*args)

    def _brpop_read(self, **options: Any) -> bool:
        try:
            return self.read_pop(**options)
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()

    def _get(self, queue: str) -> dict[str, Any]:
        with self.conn_or_acquire() as client:
            reply = client.execute_command(*self.get_command(queue))
            self._maybe_update_queues_expire(client, queue)
        return self.read_get(reply)

    def queue_key(self, queue: str, priority: int) -> str:
        """The Redis list of `queue` at one of `priority_steps` (unprefixed)."""
        key: str = self._q_for_pri(queue, priority)
        return key

    def deliver(self, payload: dict[str, Any], queue: str) -> None:
        """Hand a payload taken from `queue` to its consumer (kombu builds the Message)."""
        self.connection._deliver(payload, queue)


#: kombu's Redis Sentinel channel and transport, the bases of `worker.transport`'s Sentinel
#: variants, and the transport options only that channel reads.
SentinelChannel = kombu_redis.SentinelChannel
SentinelTransport = kombu_redis.SentinelTransport
SENTINEL_OPTIONS: tuple[str, ...] = tuple(
    o for o in kombu_redis.SentinelChannel.from_transport_options
    if o not in kombu_redis.Channel.from_transport_options
)  # fmt: skip


def keep_transport_on_switch(scheme: str, transport: str) -> None:
    """Make `scheme` resolve to `transport` in this process, so that a failover switch to
    another URL of the broker list keeps the worker on our transport (see the docstring)."""
    from kombu import transport as kombu_transport

    kombu_transport.TRANSPORT_ALIASES[scheme] = transport
    kombu_transport._transport_cache.pop(scheme, None)  # resolved once, cached for ever


# -- kombu: acks and bookkeeping -----------------------------------------------------------


def unacked_removal(qos: Any, delivery_tag: str) -> Any:
    """A pipeline that removes the delivery's unacked record and index entry (not executed,
    so the caller can add its own commands to the same round trip)."""
    return qos._remove_from_indices(delivery_tag)


def hold_locally(qos: Any, message: Any, delivery_tag: str) -> None:
    """kombu's local record of a delivery (prefetch accounting), without the Redis writes of
    the Redis QoS: for messages already recorded as unacked by the pop itself."""
    VirtualQoS.append(qos, message, delivery_tag)


def release_locally(qos: Any, delivery_tag: str) -> None:
    """Forget a delivery in kombu's local bookkeeping (prefetch credit comes back), without
    touching Redis: for deliveries whose Redis records were removed some other way."""
    VirtualQoS.ack(qos, delivery_tag)


def drop_held(qos: Any) -> int:
    """Forget every delivery a QoS holds locally, without restoring any (they stay in the
    unacked hash for the visibility-timeout sweep); how many there were."""
    held: Any = qos._delivered
    n = len(held)
    held.clear()
    return n


def mark_acked(message: Any) -> None:
    """Make a kombu Message read as acked (`message.acknowledged`), for acks done in bulk or
    by dead-lettering rather than by `Message.ack`, so nothing acks it a second time."""
    message._state = "ACK"


def raw_payload(message: Any) -> dict[str, Any]:
    """The payload a kombu virtual-transport Message was built from, as it came off Redis."""
    raw: dict[str, Any] = message._raw
    return raw


# -- Celery: the task strategy and the consumer --------------------------------------------


def message_handler(on_message: Callable[[Any], None]) -> Callable[..., None]:
    """A task-strategy handler that passes each kombu message to `on_message`. Celery calls it
    with (message, body, ack, reject, callbacks); only the message is used: acks are ours."""

    def task_message_handler(message: Any, *args: Any, **kwargs: Any) -> None:
        on_message(message)

    return task_message_handler


def batching_of(task: Any) -> Any:
    """The strategy state `set_batching` put on the task, or None before the first connect."""
    return getattr(task, "_batching", None)


def set_batching(task: Any, batching: Any) -> None:
    task._batching = batching


def consumer_timer(consumer: Any) -> Any:
    """The consumer's event-loop timer (`call_after(seconds, fun)`)."""
    return consumer.timer


def consumed_queues(consumer: Any) -> list[str]:
    """Names of the queues the consumer takes tasks from (none before it connected)."""
    task_consumer = getattr(consumer, "task_consumer", None)
    if task_consumer is None:
        return []
    return [q.name for q in task_consumer.queues]


def consume_with_prefetch(consumer: Any, prefetch: int) -> None:
    """Consume the task queues again with a per-consumer prefetch of `prefetch`. RabbitMQ
    applies a per-consumer `basic.qos` (the only kind quorum queues take) to consumers created
    after it, never to the running ones: so the task consumer's consumers are cancelled (what
    they delivered stays held, and is acked as before: delivery tags belong to the channel),
    the prefetch set, and the queues consumed again (kombu's public `Consumer.cancel`, `qos`
    and `consume`; the consumer reached through Celery's `task_consumer`)."""
    task_consumer = consumer.task_consumer
    task_consumer.cancel()
    task_consumer.qos(prefetch_count=prefetch, apply_global=False)
    task_consumer.consume()


def worker_stopping() -> bool:
    """Whether a warm or cold shutdown was requested of this worker process."""
    from celery.worker import state

    return bool(state.should_stop is not None or state.should_terminate is not None)


# -- the guard -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Need:
    """One name this module relies on. `params`: the parameter names after `self` (with `*`
    and `**` marks), when it is overridden or called here. `set_by`: for an instance
    attribute, the method of the owner that assigns it."""

    library: str
    owner: str
    name: str
    params: tuple[str, ...] | None = None
    set_by: str | None = None


NEEDS: tuple[Need, ...] = (
    Need("kombu", "redis.Channel", "_brpop_start", ("timeout",)),
    Need("kombu", "redis.Channel", "_brpop_read", ("**options",)),
    Need("kombu", "redis.Channel", "_get", ("queue",)),
    Need("kombu", "redis.Channel", "_in_poll"),
    Need("kombu", "redis.Channel", "_brpop_sent_at"),
    Need("kombu", "redis.Channel", "_flush_brpop_reauth", ()),
    Need("kombu", "redis.Channel", "_queue_cycle", set_by="__init__"),
    Need("kombu", "redis.Channel", "_q_for_pri", ("queue", "pri")),
    Need("kombu", "redis.Channel", "_maybe_update_queues_expire", ("client", "queue")),
    Need("kombu", "redis.QoS", "_remove_from_indices", ("delivery_tag", "pipe")),
    Need("kombu", "redis.QoS", "append", ("message", "delivery_tag")),
    Need("kombu", "redis.QoS", "ack", ("delivery_tag",)),
    Need("kombu", "redis.QoS", "reject", ("delivery_tag", "requeue")),
    Need("kombu", "virtual.QoS", "append", ("message", "delivery_tag")),
    Need("kombu", "virtual.QoS", "ack", ("delivery_tag",)),
    Need("kombu", "virtual.Transport", "_deliver", ("message", "queue")),
    Need("kombu", "virtual.QoS", "_delivered", set_by="__init__"),
    Need("kombu", "redis.QoS", "restore_unacked", ("client",)),
    Need("kombu", "virtual.Message", "_raw", set_by="__init__"),
    Need("kombu", "Message", "_state", set_by="__init__"),
    Need("kombu", "transport", "TRANSPORT_ALIASES"),
    Need("kombu", "transport", "_transport_cache"),
    Need("kombu", "Connection", "switch", ("conn_str",)),
    Need("kombu", "redis.SentinelChannel", "_get_pool", ("asynchronous",)),
    Need("kombu", "redis.SentinelChannel", "_sentinel_managed_pool", ("asynchronous",)),
    Need("kombu", "redis.SentinelChannel", "connection_class"),
    Need("celery", "Task", "start_strategy", ("app", "consumer", "**kwargs")),
    Need("celery", "Consumer", "timer", set_by="__init__"),
    Need("celery", "consumer.Tasks", "task_consumer", set_by="start"),
    Need("celery", "worker.state", "should_stop"),
    Need("celery", "worker.state", "should_terminate"),
)

SERIES = {"kombu": f"{KOMBU_SERIES}.x", "celery": f"{CELERY_SERIES}.x"}


def installed() -> tuple[dict[str, Any], dict[str, str]]:
    """The owners `NEEDS` names, from the installed kombu and Celery, and their versions."""
    import celery
    import kombu
    from celery.app.task import Task
    from celery.worker import state
    from celery.worker.consumer import consumer, tasks
    from kombu import Connection
    from kombu import transport as kombu_transport
    from kombu.message import Message
    from kombu.transport import virtual

    owners = {
        "redis.Channel": kombu_redis.Channel,
        "redis.QoS": kombu_redis.QoS,
        "redis.SentinelChannel": kombu_redis.SentinelChannel,
        "transport": kombu_transport,
        "Connection": Connection,
        "virtual.QoS": virtual.QoS,
        "virtual.Transport": virtual.Transport,
        "virtual.Message": virtual.Message,
        "Message": Message,
        "Task": Task,
        "Consumer": consumer.Consumer,
        "consumer.Tasks": tasks.Tasks,
        "worker.state": state,
    }
    return owners, {"kombu": kombu.__version__, "celery": celery.__version__}


def _params(fun: Any) -> tuple[str, ...] | None:
    try:
        sig = inspect.signature(fun)
    except (TypeError, ValueError):
        return None
    marks = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    names = [marks.get(p.kind, "") + p.name for p in sig.parameters.values()]
    return tuple(names[1:] if names[:1] == ["self"] else names)


def _problem(need: Need, owners: Mapping[str, Any]) -> str | None:
    """What is wrong with one need on the given owners, or None."""
    where = f"{need.owner}.{need.name}"
    owner = owners.get(need.owner)
    if owner is None:
        return f"lacks {need.owner}"
    if need.set_by is not None:
        code = getattr(getattr(owner, need.set_by, None), "__code__", None)
        if code is None or need.name not in code.co_names:
            return f"lacks {where} (set by {need.owner}.{need.set_by})"
        return None
    if not hasattr(owner, need.name):
        return f"lacks {where}"
    if need.params is not None:
        found = _params(getattr(owner, need.name))
        if found != need.params:
            shown = "unknown" if found is None else f"({', '.join(found)})"
            return f"changed {where} to {shown}, not ({', '.join(need.params)})"
    return None


def check(
    owners: Mapping[str, Any], versions: Mapping[str, str], needs: Sequence[Need] = NEEDS
) -> list[str]:
    """Every need the given kombu and Celery objects do not meet, one phrase each, e.g.
    "kombu 5.6.3 lacks redis.Channel._brpop_sent_at". Empty when the worker can run."""
    problems = []
    for need in needs:
        problem = _problem(need, owners)
        if problem is not None:
            problems.append(f"{need.library} {versions.get(need.library, '?')} {problem}")
    return problems


def refusal(problems: Sequence[str]) -> str:
    """The one line a worker that cannot run on these releases stops with: the releases it
    needs, then the problems of each installed one ("kombu 5.6.3 lacks A, B; changed C ...")."""
    by_release: dict[str, list[str]] = {}
    for problem in problems:
        library, version, what = problem.split(" ", 2)
        by_release.setdefault(f"{library} {version}", []).append(what)
    parts = []
    for release, whats in by_release.items():
        lacks = [w.removeprefix("lacks ") for w in whats if w.startswith("lacks ")]
        said = [f"lacks {', '.join(lacks)}"] if lacks else []
        said += [w for w in whats if not w.startswith("lacks ")]
        parts.append(f"{release} {'; '.join(said)}")
    libraries = [lib for lib in SERIES if any(p.startswith(f"{lib} ") for p in problems)]
    needs = " and ".join(f"{lib} {SERIES[lib]}" for lib in libraries) or "other releases"
    return f"textlstm worker needs {needs}: {'; '.join(parts)}"
