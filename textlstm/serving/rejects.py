"""What can still be read from a malformed message, so its rejection is recorded on the job.

Pure: takes the decoded body, returns the job id, total, model and item indices that are
individually well-formed. The worker stores an `error` row for each readable index (so the job
still finishes, as `partial` or `failed`, instead of waiting forever) and logs the rest.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from textlstm.messages import unstorable


@dataclass(frozen=True)
class Salvage:
    job_id: uuid.UUID | None
    model: str | None
    total: int | None
    items: tuple[tuple[int, str | None], ...]  # (index, external id)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def salvage(body: Any) -> Salvage:
    if not isinstance(body, Mapping):
        return Salvage(None, None, None, ())
    try:
        job_id: uuid.UUID | None = uuid.UUID(str(body.get("job_id")))
    except ValueError:
        job_id = None
    model = body.get("model")
    model = model[:100] if isinstance(model, str) and model and not unstorable(model) else None
    total = _int(body.get("total"))
    if total is not None and total < 1:
        total = None
    items: list[tuple[int, str | None]] = []
    seen: set[int] = set()
    raw_items = body.get("items")
    for raw in raw_items if isinstance(raw_items, list) else []:
        if not isinstance(raw, Mapping):
            continue
        index = _int(raw.get("index"))
        if index is None or index < 0 or index in seen:
            continue
        if total is not None and index >= total:
            continue
        seen.add(index)
        ext = raw.get("id")
        # An id PostgreSQL cannot hold (NUL, lone surrogate) is dropped, not allowed to fail
        # the error rows that record why the message was rejected.
        ok_ext = isinstance(ext, str) and ext and not unstorable(ext)
        items.append((index, ext[:256] if ok_ext else None))
    return Salvage(job_id, model, total, tuple(items))
