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

Before kombu sees an entry, `worker.envelope.inspect` checks all of it (a malformed envelope
used to raise inside kombu and Celery and kill the process, again at every redelivery); a
refused entry goes to the dead-letter list (textlstm/wire/deadletters.py) with its reason, in one
atomic step with its unacked record. The same script counts deliveries per message: one taken
again after its worker died is taken alone, and one taken `max_deliveries` times without an
ack is quarantined on the dead-letter list instead of being handed out (poison messages).

Everything else is kombu's: message format, the `unacked` bookkeeping and its restore, acks,
fanout (remote control), TLS, reconnection. The private kombu names the pop needs are reached
through `worker.kombu_seam` only; they are why pyproject pins kombu to one minor version.
Producers are untouched: any Celery client, in any language, still pushes the same message onto
the same list.

A Lua script cannot block, so an idle consumer waits with `BLMOVE key key RIGHT RIGHT timeout`,
which returns as soon as that list has a message without taking it (it moves the tail element
back onto the tail), or after `idle_poll_interval` seconds; then the script runs again. The
wait watches the queue that last had work; a message on another queue waits at most one
interval. Needs Redis >= 6.2 (BLMOVE).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str

from textlstm.wire.deadletters import DeadLetter, quarantine_reason
from textlstm.wire.redis_layout import DELIVERIES_KEY, dead_letter_key
from worker import kombu_seam
from worker.envelope import Accepted, Refused, inspect

log = logging.getLogger("textlstm.worker.transport")

#: KEYS: the queue keys in the order to take from, then the unacked hash and its index, the
#: delivery counts and the dead-letter list. ARGV: now (the index score, as kombu's QoS writes
#: it), the most messages to take, the most bytes (once that many are taken no further message
#: is; the first always is), the most deliveries of one message, and the dead letters to keep.
#:
#: Returns a flat list: key, payload, deliveries, tag, key, payload, ... where deliveries is
#: how many times the message has now been taken, counting this one (it is recorded in the
#: unacked hash under tag), 0 when it was not recorded (no string delivery tag, or one already
#: held by another delivery in flight: the channel refuses it), or minus the times it was
#: taken before when it was quarantined instead: taken `max_deliveries` times and never
#: acked means a worker died each time it held it, so it is moved to the dead-letter list
#: here, atomically, and not delivered again. A message taken before (a worker died holding
#: it) is taken alone, after anything else the worker holds is committed: if it is the one
#: that kills the process, its innocent neighbours are not counted with it again.
POP_AND_RECORD = """
local n = #KEYS - 4
local hash, index, counts, dead = KEYS[n + 1], KEYS[n + 2], KEYS[n + 3], KEYS[n + 4]
local now, limit, max_bytes = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local max_deliveries, keep = tonumber(ARGV[4]), tonumber(ARGV[5])
local out, taken, bytes, alone = {}, 0, 0, false
for i = 1, n do
  while taken < limit and bytes < max_bytes do
    local item = redis.call('RPOP', KEYS[i])
    if not item then break end
    local ok, msg = pcall(cjson.decode, item)
    local props = ok and type(msg) == 'table' and msg.properties
    local tag = type(props) == 'table' and props.delivery_tag
    local seen = 0
    if type(tag) == 'string' then
      seen = redis.call('HINCRBY', counts, tag, 1) - 1  -- counting first: one call, not two
    else
      tag = nil
    end
    if tag and seen >= max_deliveries then
      local headers = type(msg.headers) == 'table' and msg.headers or {}
      local task_id = type(headers.id) == 'string' and headers.id or nil
      redis.call('LPUSH', dead, cjson.encode({
        id = tag, at = tonumber(now), stage = 'poison', list = KEYS[i], task_id = task_id,
        deliveries = seen, entry = item,
        reason = 'taken ' .. seen .. ' times and never acknowledged: a worker died each ' ..
                 'time it held this message (a crash, the OOM killer, SIGKILL)'}))
      redis.call('LTRIM', dead, 0, keep - 1)
      redis.call('HDEL', counts, tag)
      out[#out + 1] = KEYS[i]
      out[#out + 1] = item
      out[#out + 1] = -seen
      out[#out + 1] = tag
    elseif tag and seen > 0 and taken > 0 then
      redis.call('HINCRBY', counts, tag, -1)  -- not taken now
      redis.call('RPUSH', KEYS[i], item)  -- back at the consuming end: taken alone, next
      alone = true
      break
    else
      if tag then
        local info = type(props.delivery_info) == 'table' and props.delivery_info or {}
        local ex, rk = info.exchange, info.routing_key
        if type(ex) ~= 'string' then ex = '' end
        if type(rk) ~= 'string' then rk = '' end
        local record = '[' .. item .. ',' .. cjson.encode(ex) .. ',' .. cjson.encode(rk) .. ']'
        if redis.call('HSETNX', hash, tag, record) == 1 then
          redis.call('ZADD', index, now, tag)
        else  -- the tag is held by another delivery in flight: refused, not recorded over
          redis.call('HINCRBY', counts, tag, -1)
          tag = nil
        end
      end
      out[#out + 1] = KEYS[i]
      out[#out + 1] = item
      out[#out + 1] = tag and seen + 1 or 0
      out[#out + 1] = tag or ''
      taken = taken + 1
      bytes = bytes + #item
      if tag and seen > 0 then
        alone = true
        break
      end
    end
  end
  if alone or taken >= limit or bytes >= max_bytes then break end
end
return out
"""

#: The hash of delivery counts (tag -> times taken), next to kombu's `unacked` hash and shared
#: like it by every queue of the Redis database. An ack or a dead-lettering removes the entry.

#: Dead-letter records and forget the deliveries they replace, in one atomic step. KEYS: the
#: dead-letter list, the unacked hash, its index, the delivery counts. ARGV: records to keep,
#: the number of records, the records, then the delivery tags to forget.
DEAD_LETTER = """
local keep, n = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 3, n + 2 do redis.call('LPUSH', KEYS[1], ARGV[i]) end
redis.call('LTRIM', KEYS[1], 0, keep - 1)
for i = n + 3, #ARGV do
  redis.call('ZREM', KEYS[3], ARGV[i])
  redis.call('HDEL', KEYS[2], ARGV[i])
  redis.call('HDEL', KEYS[4], ARGV[i])
end
return n
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


#: What the consumer does with a refused or quarantined message before it is dead-lettered:
#: record error rows on its job, when one is readable (`worker.strategy` sets it). Called with
#: the textlstm message (or None) and the reason; returns False when the worker is stopping and
#: nothing may be acked (the entry then stays in the unacked hash, and comes back).
RefusalHook = Callable[[Any, str], bool]
refusal_hook: RefusalHook | None = None


class QoS(kombu_redis.QoS):
    """kombu's Redis QoS, minus the second round trip for messages the script recorded, and
    forgetting a message's delivery count when it is acked."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorded: set[str] = set()

    def append(self, message: Any, delivery_tag: str) -> None:
        if delivery_tag in self.recorded:
            self.recorded.discard(delivery_tag)
            kombu_seam.hold_locally(self, message, delivery_tag)
        else:
            super().append(message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        kombu_seam.unacked_removal(self, delivery_tag)\
            .hdel(self.channel.deliveries_key, delivery_tag).execute()  # fmt: skip
        kombu_seam.release_locally(self, delivery_tag)

    def restore_unacked(self, client: Any = None) -> Any:
        """kombu's restore of what this channel holds (at close), unless the connection is
        already gone: kombu's Sentinel channel drops its pools before the close restores, and
        rebuilding one then fails on the missing connection (an AttributeError that Celery
        reports as unrecoverable and the worker process exits, seen when a Sentinel failover
        broke the fanout connection). Those messages stay in the unacked hash, recorded by the
        pop, and come back after the visibility timeout."""
        if client is None and self.channel.connection.client is None:
            log.warning(
                "could not restore %d unacked message(s) now (the broker connection is gone); "
                "they come back after the visibility timeout",
                kombu_seam.drop_held(self),
            )
            return None
        return super().restore_unacked(client)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if requeue:
            super().reject(delivery_tag, requeue=True)  # the count stays: it comes back
        else:
            self.ack(delivery_tag)


class Channel(kombu_seam.PopChannel):
    QoS = QoS
    #: Seconds an idle consumer waits on one queue before looking at all of them again.
    idle_poll_interval = DEFAULT_IDLE_POLL_INTERVAL
    #: Most messages one script call takes (also bounded by the prefetch credit left).
    max_pop = 64
    #: Most bytes one call takes (one message at least): about one micro-batch of news-length
    #: texts, so a big message is taken alone and 64 one-text messages still fit.
    max_pop_bytes = 64 * 1024
    #: Times one message may be taken without being acked before it is quarantined.
    max_deliveries = 3
    #: The dead-letter list (textlstm.wire.deadletters) and how many records it keeps.
    dead_letter_key = dead_letter_key("textlstm")
    dead_letter_max = 10_000
    #: The hash of delivery counts (tests give each their own).
    deliveries_key = DELIVERIES_KEY
    from_transport_options = kombu_redis.Channel.from_transport_options + (
        "idle_poll_interval",
        "max_pop",
        "max_pop_bytes",
        "max_deliveries",
        "dead_letter_key",
        "dead_letter_max",
        "deliveries_key",
    )

    _pending: str | None = None  # the command whose reply is awaited: "EVAL" or "BLMOVE"
    _idle = False  # the last pop found nothing: wait before popping again
    _wait_queue: str | None = None  # the queue that last had work: the idle wait watches it

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Accepted messages not yet taken by the consumer:
        #: tag -> (decoded body, deliveries, the list it was taken from).
        self.accepted: dict[str, tuple[list[Any], int, str]] = {}

    # -- the event-loop path (kombu sends a command, then reads the reply when readable) --

    def pop_command(self, queues: list[str]) -> list[Any]:
        if self._idle:
            wait = self._wait_queue if self._wait_queue in queues else queues[0]
            key = self._prefixed(wait)
            self._pending = "BLMOVE"
            return ["BLMOVE", key, key, "RIGHT", "RIGHT", self.idle_poll_interval]
        self._pending = "EVAL"
        return self._pop_args(queues, self._credit())

    def read_pop(self, **options: Any) -> bool:
        command, self._pending = self._pending or "EVAL", None
        started = time.perf_counter()
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

    def _deliver_all(self, reply: list[Any], started: float) -> None:
        """Hand every accepted message to its consumer; dead-letter the refused ones first.
        If a consumer raises, the messages not yet handed over go straight back to their
        queues (they are in the unacked hash). `started`: when reading the reply began;
        fetch_timer counts from it to the hand-over."""
        accepted = self._sort(reply)
        fetch_timer.add(time.perf_counter() - started)
        for n, (queue, verdict) in enumerate(accepted):
            try:
                self._wait_queue = queue
                self.deliver(verdict.payload, queue)
            except BaseException:
                self._give_back([v for _, v in accepted[n + 1 :]])
                raise

    def _sort(self, reply: list[Any]) -> list[tuple[str, Accepted]]:
        """Split a pop's reply into accepted messages (recorded for the consumer) and the
        rest, which are dead-lettered here, each with its reason."""
        accepted: list[tuple[str, Accepted]] = []
        refused: list[tuple[DeadLetter, Any, bytes | None]] = []
        for i in range(0, len(reply), 4):
            key = bytes_to_str(reply[i])
            item, deliveries = reply[i + 1], int(reply[i + 2])
            tag = reply[i + 3] if deliveries > 0 else None  # as recorded: bytes

            queue = self._queue_of(key[len(self._prefix) :])
            verdict = inspect(item)
            if deliveries < 0:  # quarantined by the script: already dead-lettered
                self._quarantined(queue, verdict, -deliveries)
                continue
            if isinstance(verdict, Accepted) and tag is not None and verdict.tag.encode() != tag:
                verdict = Refused("properties.delivery_tag does not read the same in JSON parsers",
                                  None, None, verdict.body[0][0])  # fmt: skip
            if isinstance(verdict, Accepted) and deliveries == 0:
                verdict = Refused(
                    f"delivery tag {verdict.tag!r:.60} is already held by another delivery in "
                    "flight: delivery tags must be unique",
                    None, verdict.payload.get("headers", {}).get("id"), verdict.body[0][0],
                )  # fmt: skip
            if isinstance(verdict, Refused):
                stage = "envelope"
                record = DeadLetter.new(
                    stage, verdict.reason, id=verdict.tag, list=key,
                    task_id=verdict.task_id, job_id=_job_id(verdict.message),
                    deliveries=deliveries or None, entry=bytes_to_str(item),
                )  # fmt: skip
                refused.append((record, verdict.message, tag))
                continue
            self.accepted[verdict.tag] = (verdict.body, deliveries, key)
            self.qos.recorded.add(verdict.tag)
            accepted.append((queue, verdict))
        if refused:
            self._refuse(refused)
        return accepted

    def _refuse(self, refused: list[tuple[DeadLetter, Any, bytes | None]]) -> None:
        keep: list[tuple[DeadLetter, str | bytes | None]] = []
        for record, message, tag in refused:
            log.error("dead-lettered a message on %s (job %s): %s", record.list,
                      record.job_id or "unreadable", record.reason)  # fmt: skip
            if self._record_on_job(message, record.reason):
                keep.append((record, tag))
        self.dead_letter(keep)

    def _quarantined(self, queue: str, verdict: Accepted | Refused, taken: int) -> None:
        body = verdict.body[0][0] if isinstance(verdict, Accepted) else verdict.message
        reason = quarantine_reason(taken)
        log.error("message %s on %s (job %s) %s; moved to the dead-letter list", verdict.tag,
                  queue, _job_id(body) or "unreadable", reason)  # fmt: skip
        count_dead(["poison"])
        self._record_on_job(body, reason)

    @staticmethod
    def _record_on_job(message: Any, reason: str) -> bool:
        if message is None or refusal_hook is None:
            return True
        try:
            return refusal_hook(message, reason)
        except Exception:  # noqa: BLE001 - the dead letter still says why
            log.exception("could not record the refusal on its job")
            return True

    def dead_letter(self, records: list[tuple[DeadLetter, str | bytes | None]]) -> bool:
        """Push the records onto the dead-letter list and, in the same atomic step, forget
        the recorded deliveries (tag) they replace. False, and logged, if Redis failed: the
        entries stay in the unacked hash and come back after the visibility timeout."""
        if not records:
            return True
        tags = [t for _, t in records if t]
        keys = [
            self._prefixed(k)
            for k in (
                self.dead_letter_key,
                self.unacked_key,
                self.unacked_index_key,
                self.deliveries_key,
            )
        ]
        try:
            with self.conn_or_acquire() as client:
                client.execute_command(
                    "EVAL", DEAD_LETTER, len(keys), *keys, self.dead_letter_max, len(records),
                    *(r.to_json() for r, _ in records), *tags,
                )  # fmt: skip
        except Exception as exc:  # noqa: BLE001
            log.warning("could not dead-letter %d message(s) now: %s", len(records), exc)
            return False
        count_dead(r.stage for r, _ in records)
        return True

    def dead_letter_delivered(self, message: Any, record: DeadLetter) -> bool:
        """Dead-letter a message the consumer was given, with the entry it came as, as its
        ack."""
        record = replace(record, entry=json.dumps(kombu_seam.raw_payload(message)))
        if not self.dead_letter([(record, message.delivery_tag)]):
            return False
        kombu_seam.release_locally(self.qos, message.delivery_tag)
        kombu_seam.mark_acked(message)
        return True

    def ack_many(self, messages: list[Any]) -> None:
        """Ack committed messages in one round trip: three multi-member commands, whatever
        their number (kombu's Redis ack is one pipeline of two commands per message, ~1 ms
        a message here, more than the forward pass of its text)."""
        tags = [m.delivery_tag for m in messages]
        with self.qos.pipe_or_acquire() as pipe:
            pipe.zrem(self.qos.unacked_index_key, *tags)
            pipe.hdel(self.qos.unacked_key, *tags)
            pipe.hdel(self.deliveries_key, *tags)
            pipe.execute()
        for m in messages:
            kombu_seam.release_locally(self.qos, m.delivery_tag)
            kombu_seam.mark_acked(m)

    def take_body(self, delivery_tag: str) -> tuple[list[Any], int, str] | None:
        """The body `inspect` decoded for this delivery, its delivery count and the list it
        was taken from (once)."""
        return self.accepted.pop(delivery_tag, None)

    def _give_back(self, verdicts: list[Accepted]) -> None:
        for verdict in verdicts:
            self.qos.recorded.discard(verdict.tag)
            self.accepted.pop(verdict.tag, None)
            try:
                self.qos.restore_by_tag(verdict.tag)  # the consuming end: taken next
            except Exception as exc:  # noqa: BLE001 - restored after the visibility timeout
                log.warning("could not restore message %s now: %s", verdict.tag, exc)

    # -- the synchronous path (basic_get, drain_events without an event loop) ------------

    def get_command(self, queue: str) -> list[Any]:
        return self._pop_args([queue], 1)

    def read_get(self, reply: Any) -> dict[str, Any]:
        accepted = self._sort(reply or [])
        if accepted:
            return accepted[0][1].payload
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
            self._prefixed(self.queue_key(queue, pri))
            for pri in self.priority_steps
            for queue in queues
        ]
        keys += [
            self._prefixed(k)
            for k in (self.unacked_key, self.unacked_index_key, self.deliveries_key,
                      self.dead_letter_key)
        ]  # fmt: skip
        return ["EVAL", POP_AND_RECORD, len(keys), *keys, time.time(), limit, self.max_pop_bytes,
                self.max_deliveries, self.dead_letter_max]  # fmt: skip

    def _queue_of(self, key: str) -> str:
        return key.rsplit(self.sep, 1)[0]


def count_dead(stages: Iterable[str]) -> None:
    try:
        from textlstm.serving.metrics import get_metrics

        counter = get_metrics().dead_lettered
        for stage in stages:
            counter.labels(stage).inc()
    except Exception:  # noqa: BLE001 - metrics must never stop the work
        log.exception("could not count dead letters")


def _job_id(message: Any) -> str | None:
    job = message.get("job_id") if isinstance(message, dict) else None
    return job[:64] if isinstance(job, str) else None


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelChannel(Channel, kombu_seam.SentinelChannel):
    """The same pop on a Redis Sentinel deployment: kombu's Sentinel channel finds the master
    (its connection pool asks the Sentinels on every new connection), and everything that
    runs on that connection is this module's, so the pop and its unacked record stay one
    atomic script on whichever node is master. After a failover the consumer reconnects
    (Celery's broker reconnection) and the pool finds the promoted replica."""

    from_transport_options = tuple(
        dict.fromkeys(Channel.from_transport_options + kombu_seam.SENTINEL_OPTIONS)
    )


class SentinelTransport(kombu_seam.SentinelTransport):
    Channel = SentinelChannel
