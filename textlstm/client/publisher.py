"""The one publisher: how every producer puts already-validated messages on the broker.

`Client.submit` and `republish` (`textlstm.client.jobs`), the batching `Producer`
(`textlstm.client.producer`) and `textlstm-admin jobs requeue` (`textlstm.ops.recovery`) all
send through `publish_messages` or `publish_envelopes`, so what goes on the wire is decided here
once:

- a JSON Celery task named `textlstm.classify` whose one argument is the body: a version 1
  message, or a version 2 envelope of several (`textlstm.wire.messages`);
- on the queue of the messages' priority (`textlstm.wire.queues.queue_for`), worked out here
  so no caller can put a message on another priority's queue (a call mixing priorities, or a
  `Gate` of another queue, is a bug: ValueError before anything is sent);
- a short `argsrepr` summary in the headers instead of the texts (`headers_repr`);
- a version 1 message's task id is derived from (job, first item), so a re-sent chunk keeps its
  id; an envelope's is random (its parts are identified inside it);
- every message of a call on one producer from the pool (`producer_or_acquire`), each send
  retried twice within about a second, as fast as the backpressure `Gate` admits them;
- on Redis Sentinel (`sentinel://`) and RabbitMQ (`amqp://`) the broker is asked once per
  process before the first send (`broker_answers`: who the master is; one AMQP handshake), so
  a wrong or dead Sentinel set, a refused login, a missing vhost or a RabbitMQ queue declared
  with other arguments (`checked_queues`) is one BrokerError at once rather than a traceback
  after the retries; each send is retried for up to
  `broker_failover_timeout_s` (a failover takes the Sentinels' down-after-milliseconds plus the
  promotion), and a call returns only once `broker_wait_replicas` replicas hold what it sent
  (`confirm_replicated`, Redis `WAIT`): Redis replicates asynchronously, so without it the last
  messages a killed master acknowledged may never reach the replica that replaces it;
- a broker that cannot be reached is one BrokerError naming the broker with its password
  masked (`mask_url`), never a traceback from kombu (`broker_error`, which recovery also uses
  when it cannot read the broker's copies).

Callers validate (`textlstm.wire.messages`) and decide on backpressure and job rows; this
module only sends.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from textlstm.broker_options import amqp_queue, amqp_topology, is_amqp, is_sentinel, probe_broker
from textlstm.client.backpressure import Gate
from textlstm.client.celery_app import client_app
from textlstm.errors import BrokerError
from textlstm.settings import Settings, mask_url
from textlstm.wire.messages import TASK_NAME, ClassifyMessage, envelope, headers_repr, new_id
from textlstm.wire.queues import queue_for

#: How each message's send is retried while the broker connection is re-established.
RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}

#: (process id, broker URL) whose Sentinels answered: asked once per process.
_brokers_checked: set[tuple[int, str]] = set()


def retry_policy(settings: Settings) -> dict[str, float]:
    """RETRY_POLICY, stretched on Sentinel to cover a failover (about one retry a second for
    `broker_failover_timeout_s`)."""
    if not is_sentinel(settings.broker_url):
        return RETRY_POLICY
    return {**RETRY_POLICY, "max_retries": max(2, math.ceil(settings.broker_failover_timeout_s))}


def broker_answers(settings: Settings) -> None:
    """On `sentinel://`, ask the Sentinels for the master, on amqp:// open one AMQP connection,
    once per process (`textlstm.broker_options.probe_broker`); BrokerError (one line, naming
    the settings) when none answers, none knows `master_name`, or RabbitMQ refuses the login
    or the vhost."""
    if not (is_sentinel(settings.broker_url) or is_amqp(settings.broker_url)):
        return
    key = (os.getpid(), settings.broker_url)
    if key in _brokers_checked:
        return
    try:
        probe_broker(
            settings.broker_url, settings.broker_transport_options, queues=checked_queues(settings)
        )
    except ConnectionError as exc:
        raise BrokerError(f"broker {mask_url(settings.broker_url)}: {exc}") from None
    _brokers_checked.add(key)


def checked_queues(settings: Settings) -> list[Any]:
    """On amqp://, the queues whose arguments every command checks at start-up
    (`textlstm.broker_options.amqp_topology`: a queue declared by an older version is one
    line); none elsewhere."""
    if not is_amqp(settings.broker_url):
        return []
    return amqp_topology(settings.queue, settings.worker_max_deliveries)


def confirm_replicated(settings: Settings, producer: Any, what: str) -> None:
    """Block until `settings.wait_replicas` replicas hold every write this producer's channel
    made (Redis `WAIT`), or raise BrokerError after `broker_wait_timeout_ms`.

    `WAIT` counts the writes of the connection it is sent on. kombu's Redis channel sends
    each LPUSH on a connection of its own pool and puts it back; redis-py's pool hands out
    the connection put back last, and this producer is held by one thread, so the WAIT goes
    out on the connection that sent the last message, and Redis replicates in order, so the
    earlier ones are covered too (the Sentinel fault test checks it: nothing lost)."""
    wanted = settings.wait_replicas
    if wanted <= 0:
        return
    with producer.channel.conn_or_acquire() as client:
        acked = int(client.execute_command("WAIT", wanted, settings.broker_wait_timeout_ms))
    if acked < wanted:
        raise BrokerError(
            f"{what} was sent to broker {mask_url(settings.broker_url)} but only {acked} of "
            f"{wanted} replica(s) confirmed it within {settings.broker_wait_timeout_ms} ms "
            "(TEXTLSTM_BROKER_WAIT_REPLICAS): a failover now could lose it. Send the same job "
            "id again once the replicas are back (items are stored once)"
        )


@dataclass(frozen=True)
class Outgoing:
    """One broker message: its body, its task id, its `argsrepr` summary, and the classify
    messages it carries (a version 1 body carries one, an envelope several)."""

    body: dict[str, Any]
    task_id: str
    summary: str
    messages: Sequence[ClassifyMessage]


def as_messages(messages: Sequence[ClassifyMessage]) -> list[Outgoing]:
    """Each message as its own version 1 body, with the task id of its (job, first item)."""
    out = []
    for msg in messages:
        first = msg.items[0].index
        out.append(
            Outgoing(
                body=msg.to_json(),
                task_id=str(uuid.uuid5(msg.job_id, str(first))),
                summary=f"job {msg.job_id} items {first}+{len(msg.items)}",
                messages=(msg,),
            )
        )
    return out


def as_envelopes(groups: Sequence[Sequence[ClassifyMessage]]) -> list[Outgoing]:
    """Each group as one body: a version 2 envelope, or the message itself when it is alone
    (a version 1 body is what every worker reads, and a few bytes shorter)."""
    return [
        Outgoing(
            body=group[0].to_json() if len(group) == 1 else envelope(group),
            task_id=str(new_id()),
            summary=f"envelope of {len(group)} job(s)",
            messages=group,
        )
        for group in groups
    ]


def queue_of(settings: Settings, messages: Sequence[ClassifyMessage]) -> str:
    """The one queue `messages` belong on: their priority's. ValueError when they have
    several priorities (a caller's bug: one call sends to one queue)."""
    priorities = {m.priority for m in messages}
    if len(priorities) != 1:
        raise ValueError(f"one publish call sends one priority, got {sorted(priorities)}")
    return queue_for(settings.queue, priorities.pop())


def publish(
    settings: Settings,
    outgoing: Sequence[Outgoing],
    *,
    what: str,
    gate: Gate | None = None,
    on_sent: Callable[[Outgoing], None] | None = None,
) -> None:
    """Send `outgoing` to their priority's queue on one pooled producer, as fast as `gate`
    (which must be that queue's) admits them.

    `what` names the messages in the BrokerError ("job <id>", "3 buffered job part(s)").
    `on_sent` is called after each message is handed to the broker, so a caller counting what
    it sent stays right when a later one fails. Raises BrokerError (the broker could not be
    reached within the retries) or QueueFullError (from `gate`).
    """
    if not outgoing:
        return
    queue = queue_of(settings, [m for out in outgoing for m in out.messages])
    if gate is not None and gate.queue != queue:
        raise ValueError(f"the gate of queue {gate.queue!r} admits to {queue!r}")
    from kombu.exceptions import KombuError, OperationalError
    from redis.exceptions import RedisError

    total = len(outgoing)
    policy = retry_policy(settings)
    # On RabbitMQ the queue as a kombu Queue: Celery declares it with exactly the arguments
    # the workers declare (a declaration that differs is refused), where a name alone would
    # make it create a quorum queue with no delivery limit or dead-lettering.
    destination: Any = queue
    if is_amqp(settings.broker_url):
        destination = amqp_queue(settings.queue, queue, settings.worker_max_deliveries)
    broker_answers(settings)
    try:
        app = client_app(settings)  # in the try: building it looks the broker's pool up
        with app.producer_or_acquire() as producer:
            sent = 0
            while sent < total:
                n = gate.admit(total - sent, sent=sent, total=total) if gate else total - sent
                for out in outgoing[sent : sent + n]:
                    app.send_task(
                        TASK_NAME,
                        args=[out.body],
                        queue=destination,
                        task_id=out.task_id,
                        **headers_repr(out.summary),
                        serializer="json",
                        producer=producer,
                        retry=True,
                        retry_policy=policy,
                    )
                    if on_sent is not None:
                        on_sent(out)
                sent += n
            confirm_replicated(settings, producer, what)
    except (OperationalError, KombuError, OSError, RedisError) as exc:
        raise broker_error(settings, f"enqueue {what}", exc) from None


def broker_error(settings: Settings, doing: str, exc: BaseException) -> BrokerError:
    """The one error a client-side broker failure becomes, whoever hit it: what was being done,
    the broker with its password masked, and the cause on the same line (the CLI prints a
    TextlstmError as one line; a traceback would show kombu's frames, not the problem)."""
    cause = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return BrokerError(f"could not {doing} on broker {mask_url(settings.broker_url)}: {cause}")


def publish_messages(
    settings: Settings, messages: Sequence[ClassifyMessage], *, gate: Gate | None = None
) -> None:
    """Send the messages of one job, each as a version 1 body, to their priority's queue.
    `gate` (that queue's) applies backpressure; None sends them all at once."""
    if messages:
        what = f"job {messages[0].job_id}"
        publish(settings, as_messages(messages), what=what, gate=gate)


def publish_envelopes(
    settings: Settings,
    groups: Sequence[Sequence[ClassifyMessage]],
    *,
    on_sent: Callable[[Outgoing], None] | None = None,
    gate: Gate | None = None,
) -> None:
    """Send each group of messages (parts of any jobs, one priority) as one broker message.
    `gate` (that queue's) applies backpressure; None, as for the batching Producer, whose
    own buffer bounds what it holds, sends them all at once."""
    what = f"{sum(map(len, groups))} buffered job part(s)"
    publish(settings, as_envelopes(groups), what=what, gate=gate, on_sent=on_sent)
