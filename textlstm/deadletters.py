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
field names. `textlstm-admin dead-letters list|show|requeue|purge` reads and edits the list.
Only the functions that take a Redis client do I/O.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

STAGES = ("envelope", "body", "part", "store", "poison")
#: Longest reason kept in a record.
MAX_REASON_CHARS = 1000


def dead_letter_key(queue: str) -> str:
    """The Redis list holding the dead letters of `queue` and its priority queues."""
    return f"{queue}.dead-letters"


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
    try:
        return message_of_payload(json.loads(entry or ""))
    except (ValueError, RecursionError):
        return None


def message_of_payload(payload: Any) -> Any:
    """The same, from an entry already parsed (the worker reads refused entries this way, so
    that bad headers do not make the job unreadable). Never raises."""
    import base64

    try:
        body = payload["body"]
        if base64_body := payload["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body, validate=True)
        return json.loads(body if base64_body else body.encode())[0][0]
    except Exception:  # noqa: BLE001 - unreadable: the dead letter still holds the entry
        return None


# -- Redis I/O (the admin commands and the worker) --------------------------------------------

#: Moves one record's entry back onto the list it came from, if the record is still there
#: (two operators requeueing at once push it once). KEYS: dead-letter list, target list.
REQUEUE = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0
"""


def count(client: Any, key: str) -> int:
    return int(client.llen(key))


def read(client: Any, key: str, limit: int | None = None) -> list[tuple[bytes, DeadLetter]]:
    """Records newest first, each with its stored bytes (to remove exactly that one).
    A record that does not parse is shown as one with stage `unreadable`."""
    raws = client.lrange(key, 0, -1 if limit is None else limit - 1)
    out = []
    for raw in raws:
        try:
            out.append((raw, DeadLetter.from_json(raw)))
        except (ValueError, TypeError, KeyError) as exc:
            out.append((raw, DeadLetter(id="?", at=0, stage="unreadable", reason=str(exc))))
    return out


def find(client: Any, key: str, record_id: str) -> tuple[bytes, DeadLetter] | None:
    for raw, record in read(client, key):
        if record.id == record_id:
            return raw, record
    return None


def remove(client: Any, key: str, raw: bytes) -> bool:
    return int(client.lrem(key, 1, raw)) == 1


def requeue_entry(client: Any, key: str, raw: bytes, record: DeadLetter) -> bool:
    """Put a whole entry back at the consuming end of its list; False if already gone."""
    if record.entry is None or record.list is None:
        raise ValueError(f"dead letter {record.id} holds no broker entry to put back")
    return bool(client.eval(REQUEUE, 2, key, record.list, raw, record.entry))
