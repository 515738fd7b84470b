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
field names. `textlstm-admin dead-letters list|show|requeue|purge` reads and edits the list through
`textlstm.ops.deadletters`. This module does no I/O.
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

from textlstm.wire.redis_layout import dead_letter_key, loads, task_argument

__all__ = ["STAGES", "DeadLetter", "dead_letter_key", "message_of_entry"]

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
