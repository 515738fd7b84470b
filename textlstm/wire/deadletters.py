"""The dead-letter list: broker messages the workers refused or quarantined, with why.

A message that a worker cannot take — a malformed envelope, a body that fails validation with
no readable job to record it on, a job the database refuses, or a message in flight every time
a worker died (`poison`) — is moved here instead of being dropped or redelivered forever. Each
record is a JSON object on a Redis list next to the queues (`<queue>.dead-letters`, newest
first, trimmed to `dead_letter_max`):

    {"id": "…",            # the delivery tag when the envelope had one, else a new id
     "at": 1733338000.1,   # when it was dead-lettered (Unix seconds)
     "stage": "envelope" | "body" | "part" | "store" | "poison",
     "reason": "…",        # one line
     "list": "textlstm",   # the Redis list the entry was taken from (null for a part)
     "task_id": "…" | null, "job_id": "…" | null, "deliveries": 3 | null,
     "entry": "…" | null,  # the raw list entry, exactly as taken (requeue pushes it back)
     "body": {…} | null,   # for one part of an envelope: that version 1 message
     "worker": "host:pid" | null}

The worker's Lua pop script writes `poison` records itself (worker/transport.py), with the same
field names.

On RabbitMQ (amqp://) the records are messages of the dead-letter queue `<queue>.dead-letters`
(`textlstm.broker_options.amqp_queue_arguments`): those the worker publishes are these same
JSON records (`RECORD_HEADER`); RabbitMQ's own dead letters (a message returned more times than
`x-delivery-limit`, or rejected) are the refused message itself, read as a record by
`from_amqp`. The dead-letter queue is not trimmed (`dead_letter_max` is Redis's).

`textlstm-admin dead-letters list|show|requeue|purge` reads and edits them through
`textlstm.ops.deadletters` (Redis) and `textlstm.ops.amqp_deadletters`. This module does no I/O.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from textlstm.wire.redis_layout import dead_letter_key, loads, task_argument

__all__ = [
    "RECORD_HEADER",
    "STAGES",
    "DeadLetter",
    "dead_letter_key",
    "from_amqp",
    "message_of_entry",
    "quarantine_reason",
]

STAGES = ("envelope", "body", "part", "store", "poison")
#: Longest reason kept in a record.
MAX_REASON_CHARS = 1000


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class DeadLetter:
    id: str
    at: float
    stage: str
    reason: str
    list: str | None = None
    task_id: str | None = None
    job_id: str | None = None
    deliveries: int | None = None
    entry: str | None = None
    body: Mapping[str, Any] | None = None
    worker: str | None = None

    @classmethod
    def new(cls, stage: str, reason: str, *, id: str | None = None, **fields: Any) -> DeadLetter:
        """A record made now by this process; `reason` is cut to one line."""
        line = " ".join(reason.split())[:MAX_REASON_CHARS]
        return cls(
            id=id or uuid.uuid4().hex, at=time.time(), stage=stage, reason=line,
            worker=_worker(), **fields,
        )  # fmt: skip

    def to_json(self) -> str:
        # ASCII: a refused entry may carry lone surrogates, which UTF-8 cannot encode.
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> DeadLetter:
        """A stored record; fields this version does not know are ignored."""
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("a dead-letter record must be a JSON object")
        known = {k: data.get(k) for k in cls.__dataclass_fields__}
        known["id"] = str(known["id"])
        known["at"] = float(known["at"] or 0)
        known["stage"] = str(known["stage"])
        known["reason"] = str(known["reason"])
        return cls(**known)

    def readable_job_id(self) -> str | None:
        """The job id, from the record or, failing that, from the stored entry's body."""
        if self.job_id:
            return self.job_id
        message = self.body if self.body is not None else message_of_entry(self.entry)
        job = message.get("job_id") if isinstance(message, Mapping) else None
        return job if isinstance(job, str) else None


def message_of_entry(entry: str | None) -> Any:
    """The textlstm message (the task's first argument) inside a raw list entry, or None.
    Best effort: never raises."""
    return task_argument(loads(entry))


def quarantine_reason(taken: int) -> str:
    """Why a message was quarantined after being taken `taken` times without an ack: the
    reason recorded on its job's rows and in its dead-letter record, on every broker."""
    return f"quarantined after {taken} deliveries: a worker died each time it held this message"


# -- RabbitMQ (amqp://): records as messages of the dead-letter queue ---------------------------

#: The header that marks a message of the dead-letter queue as a record the worker published
#: (its body is `DeadLetter.to_json()`); any other message there was dead-lettered by RabbitMQ
#: itself and is the refused Celery message, with RabbitMQ's `x-death` header.
RECORD_HEADER = "textlstm-dead-letter"

#: RabbitMQ's dead-lettering reasons (`x-death[].reason`) as a record's stage and reason.
_BROKER_REASONS = {
    "delivery_limit": (
        "poison",
        "dead-lettered by RabbitMQ: returned more times than the queue's x-delivery-limit (a "
        "worker died each time it held this message, and the quarantine never completed)",
    ),
    "rejected": ("body", "dead-lettered by RabbitMQ: a worker rejected it"),
    "expired": ("body", "dead-lettered by RabbitMQ: its message TTL expired"),
    "maxlen": ("body", "dead-lettered by RabbitMQ: its queue exceeded a length limit"),
}


def from_amqp(body: bytes | str, headers: Mapping[str, Any] | None) -> DeadLetter:
    """The record a message of the dead-letter queue stands for: the record itself when the
    worker published it (`RECORD_HEADER`), else a record made from RabbitMQ's `x-death`
    header around the refused Celery message (its `entry`, whose task argument is the
    textlstm message). Its id is stable while it sits in the queue (the worker's record id,
    or a digest of the message and its death), so `show`, `requeue` and `purge` find it again.
    Raises ValueError on a record that does not parse."""
    headers = dict(headers or {})
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    if headers.get(RECORD_HEADER):
        return DeadLetter.from_json(text)
    deaths = headers.get("x-death")
    death = deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else {}
    why = str(death.get("reason") or "unknown")
    stage, reason = _BROKER_REASONS.get(why, ("body", f"dead-lettered by RabbitMQ ({why})"))
    when = death.get("time")
    at = when.timestamp() if hasattr(when, "timestamp") else 0.0
    queue = death.get("queue")
    digest = hashlib.sha256(f"{text}\0{queue}\0{why}\0{at}".encode()).hexdigest()[:24]
    task_id = headers.get("id")
    argument = loads(text)
    message = argument[0][0] if _is_task_body(argument) else None
    job = message.get("job_id") if isinstance(message, Mapping) else None
    return DeadLetter(
        id=digest, at=at, stage=stage, reason=reason,
        list=str(queue) if queue else None,
        task_id=task_id if isinstance(task_id, str) else None,
        job_id=job[:64] if isinstance(job, str) else None,
        entry=text,
        body=message if isinstance(message, Mapping) else None,
    )  # fmt: skip


def _is_task_body(value: Any) -> bool:
    """A Celery protocol 2 body `[args, kwargs, embed]` whose args hold one argument."""
    return (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], list)
        and len(value[0]) == 1
    )
