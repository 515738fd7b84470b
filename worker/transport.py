"""A Redis transport for kombu whose pop cannot lose a message.

kombu's Redis transport takes a message with `BRPOP`, which removes it from the queue, and only
in a second round trip writes it to the `unacked` hash that redelivers it if the worker dies
(celery/celery#7950). A worker killed between the two loses that message: acks after commit
cannot help, because it was never recorded as delivered. The fault tests measured one or two
lost messages per five SIGKILLs.

This transport moves a message from its queue into the `unacked` hash and index in **one Lua
script**, which Redis runs atomically: at every instant a message is either in its queue or
recorded as delivered, so a kill at any point leaves it to the visibility-timeout restore. One
script call also takes up to the prefetch credit left (many one-text messages per round trip),
but no more than `max_pop_bytes` of them: a worker handles what it took before it takes again,
so two workers that each took 64 messages of 256 texts would not share a job of 79 such
messages fairly (one worked while the other sat idle; bench/pipeline.py measured it).

Everything else is kombu's: message format, the `unacked` bookkeeping and its restore, acks,
fanout (remote control), TLS, reconnection. Producers are untouched: any Celery client, in any
language, still pushes the same message onto the same list.

A Lua script cannot block, so an idle consumer waits with `BLMOVE key key RIGHT RIGHT timeout`,
which returns as soon as that list has a message without taking it (it moves the tail element
back onto the tail), or after `idle_poll_interval` seconds; then the script runs again. The
wait watches the queue that last had work; a message on another queue waits at most one
interval. Needs Redis >= 6.2 (BLMOVE).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import QoS as VirtualQoS
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

log = logging.getLogger("textlstm.worker.transport")

#: KEYS: the queue keys in the order to take from, then the unacked hash and its index.
#: ARGV: now (the index score, as kombu's QoS writes it), the most messages to take, and the
#: most bytes: once that many are taken no further message is (the first always is).
#: Returns a flat list: key, payload, key, payload, ... An entry that is not a kombu message
#: (not JSON, or no delivery tag) is returned without being recorded: it could never be
#: restored anyway, and the channel drops it with a logged reason.
POP_AND_RECORD = """
local n = #KEYS - 2
local hash, index = KEYS[n + 1], KEYS[n + 2]
local now, limit, max_bytes = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out, taken, bytes = {}, 0, 0
for i = 1, n do
  while taken < limit and bytes < max_bytes do
    local item = redis.call('RPOP', KEYS[i])
    if not item then break end
    local ok, msg = pcall(cjson.decode, item)
    local props = ok and type(msg) == 'table' and msg.properties
    local tag = type(props) == 'table' and props.delivery_tag
    if type(tag) == 'string' then
      local info = type(props.delivery_info) == 'table' and props.delivery_info or {}
      local ex, rk = info.exchange, info.routing_key
      if type(ex) ~= 'string' then ex = '' end
      if type(rk) ~= 'string' then rk = '' end
      redis.call('HSET', hash, tag,
                 '[' .. item .. ',' .. cjson.encode(ex) .. ',' .. cjson.encode(rk) .. ']')
      redis.call('ZADD', index, now, tag)
    end
    out[#out + 1] = KEYS[i]
    out[#out + 1] = item
    taken = taken + 1
    bytes = bytes + #item
  end
  if taken >= limit or bytes >= max_bytes then break end
end
return out
"""

DEFAULT_IDLE_POLL_INTERVAL = 0.025


class FetchTimer:
    """Seconds spent taking messages off Redis: reading the script's reply and parsing kombu's
    payloads, up to the first hand-over to a consumer (what the consumer then does is its
    own). The batch log reports it as `fetch_ms`, so bench/pipeline.py can split fetch from
    Celery's dispatch and the acks."""

    def __init__(self) -> None:
        self._s = 0.0

    def add(self, seconds: float) -> None:
        self._s += seconds

    def take_ms(self) -> float:
        """The milliseconds since the last call, and start counting again."""
        ms, self._s = self._s * 1000, 0.0
        return ms


#: One per worker process: a worker consumes on one Redis channel at a time.
fetch_timer = FetchTimer()


class QoS(kombu_redis.QoS):
    """kombu's Redis QoS, minus the second round trip for messages the script recorded."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorded: set[str] = set()

    def append(self, message: Any, delivery_tag: str) -> None:
        if delivery_tag in self.recorded:
            self.recorded.discard(delivery_tag)
            VirtualQoS.append(self, message, delivery_tag)  # local bookkeeping only
        else:
            super().append(message, delivery_tag)


class Channel(kombu_redis.Channel):
    QoS = QoS
    #: Seconds an idle consumer waits on one queue before looking at all of them again.
    idle_poll_interval = DEFAULT_IDLE_POLL_INTERVAL
    #: Most messages one script call takes (also bounded by the prefetch credit left).
    max_pop = 64
    #: Most bytes one call takes (one message at least): about one micro-batch of news-length
    #: texts, so a big message is taken alone and 64 one-text messages still fit.
    max_pop_bytes = 64 * 1024
    from_transport_options = kombu_redis.Channel.from_transport_options + (
        "idle_poll_interval",
        "max_pop",
        "max_pop_bytes",
    )

    _pending: str | None = None  # the command whose reply is awaited: "EVAL" or "BLMOVE"
    _idle = False  # the last pop found nothing: wait before popping again
    _wait_queue: str | None = None  # the queue that last had work: the idle wait watches it

    # -- the event-loop path (kombu sends a command, then reads the reply when readable) --

    def _brpop_start(self, timeout: float | None = None) -> None:
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        conn = self.client.connection
        if self._idle:
            wait = self._wait_queue if self._wait_queue in queues else queues[0]
            key = self._prefixed(wait)
            self._pending = "BLMOVE"
            args: list[Any] = ["BLMOVE", key, key, "RIGHT", "RIGHT", self.idle_poll_interval]
        else:
            self._pending = "EVAL"
            args = self._pop_args(queues, self._credit())
        self._in_poll = conn
        self._brpop_sent_at = time.monotonic()
        conn.send_command(*args)

    def _brpop_read(self, **options: Any) -> bool:
        command, self._pending = self._pending or "EVAL", None
        started = time.perf_counter()
        try:
            try:
                reply = self.client.parse_response(self.client.connection, command, **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            # After a wait, pop whether or not the watched queue got a message: the wait
            # timing out is when the other queues are looked at.
            self._idle = command == "EVAL" and not reply
            if command != "EVAL" or not reply:
                raise kombu_redis.Empty()
            self._deliver_all(reply, started)
            return True
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()

    def _deliver_all(self, reply: list[Any], started: float) -> None:
        """Hand every taken message to its consumer. If a consumer raises, the messages not
        yet handed over go straight back to their queues (they are in the unacked hash).
        `started`: when reading the reply began; fetch_timer counts from it to the hand-over."""
        items = [
            (bytes_to_str(reply[i])[len(self._prefix) :], bytes_to_str(reply[i + 1]))
            for i in range(0, len(reply), 2)
        ]
        parsed = [(self._queue_of(key), self._parse(key, item)) for key, item in items]
        for _, payload in parsed:
            if payload is not None:
                self.qos.recorded.add(payload["properties"]["delivery_tag"])
        fetch_timer.add(time.perf_counter() - started)
        for n, (queue, payload) in enumerate(parsed):
            if payload is None:
                continue
            try:
                self._wait_queue = queue
                self.connection._deliver(payload, queue)
            except BaseException:
                self._give_back([p for _, p in parsed[n + 1 :] if p is not None])
                raise

    def _give_back(self, payloads: list[dict[str, Any]]) -> None:
        for payload in payloads:
            tag = payload["properties"]["delivery_tag"]
            self.qos.recorded.discard(tag)
            try:
                self.qos.restore_by_tag(tag)  # the consuming end: taken next
            except Exception as exc:  # noqa: BLE001 - restored after the visibility timeout
                log.warning("could not restore message %s now: %s", tag, exc)

    # -- the synchronous path (basic_get, drain_events without an event loop) ------------

    def _get(self, queue: str) -> dict[str, Any]:
        with self.conn_or_acquire() as client:
            reply = client.execute_command(*self._pop_args([queue], 1))
            self._maybe_update_queues_expire(client, queue)
        for i in range(0, len(reply or []), 2):
            key = bytes_to_str(reply[i])[len(self._prefix) :]
            payload = self._parse(key, bytes_to_str(reply[i + 1]))
            if payload is not None:
                self.qos.recorded.add(payload["properties"]["delivery_tag"])
                return payload
        raise kombu_redis.Empty()

    # -- helpers ---------------------------------------------------------------------------

    @property
    def _prefix(self) -> str:
        return self.global_keyprefix or ""

    def _prefixed(self, key: str) -> str:
        return self._prefix + key

    def _credit(self) -> int:
        estimate = self.qos.can_consume_max_estimate()
        limit = self.max_pop if estimate is None else min(self.max_pop, int(estimate))
        return max(1, limit)

    def _pop_args(self, queues: list[str], limit: int) -> list[Any]:
        # The key order of kombu's BRPOP: every queue at one priority step, then the next.
        keys = [
            self._prefixed(self._q_for_pri(queue, pri))
            for pri in self.priority_steps
            for queue in queues
        ]
        keys += [self._prefixed(self.unacked_key), self._prefixed(self.unacked_index_key)]
        return ["EVAL", POP_AND_RECORD, len(keys), *keys, time.time(), limit, self.max_pop_bytes]

    def _queue_of(self, key: str) -> str:
        return key.rsplit(self.sep, 1)[0]

    def _parse(self, key: str, item: str) -> dict[str, Any] | None:
        try:
            payload = loads(item)
            payload["properties"]["delivery_tag"]  # noqa: B018 - what kombu requires
        except Exception as exc:  # noqa: BLE001 - a foreign entry on our list
            log.error(
                "dropped an entry on queue %s that is not a kombu message (%s): %.200r",
                self._queue_of(key),
                type(exc).__name__,
                item,
            )
            return None
        return payload


class Transport(kombu_redis.Transport):
    Channel = Channel
