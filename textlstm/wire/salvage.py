"""What can still be read from a malformed message, so its rejection is recorded on the job.

Pure: takes the decoded body, returns the job id, total, model and item indices that are
individually well-formed. The worker stores an `error` row for each readable index (so the job
still finishes, as `partial` or `failed`, instead of waiting forever) and logs the rest.

Total, and within the storage limits (textlstm/wire/limits.py): whatever the body holds, `salvage`
returns, and what it returns fits the columns the error rows and the job row go to, so
recording a rejection cannot fail on the values that caused it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from textlstm.errors import ValidationError
from textlstm.wire import limits as bounds
from textlstm.wire.messages import parse_job_id, unstorable


@dataclass(frozen=True)
class Salvage:
    job_id: uuid.UUID | None
    model: str | None
    total: int | None
    items: tuple[tuple[int, str | None], ...]  # (index, external id)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _job_id(value: Any) -> uuid.UUID | None:
    # The validator's own rule; no str() of the value, which can itself fail (a deep list:
    # RecursionError, an integer over 4,300 digits: ValueError).
    try:
        return parse_job_id(value)
    except ValidationError:
        return None


def _ext_id(value: Any) -> str | None:
    """The item's id as _check_id would store it, cut to the column; None if unusable."""
    if isinstance(value, int) and not isinstance(value, bool):
        ok = bounds.EXTERNAL_ID_INT_MIN <= value <= bounds.EXTERNAL_ID_INT_MAX
        return str(value) if ok else None
    # An id PostgreSQL cannot hold (NUL, lone surrogate) is dropped, not allowed to fail
    # the error rows that record why the message was rejected.
    if isinstance(value, str) and value and not unstorable(value):
        return value[: bounds.EXTERNAL_ID_CHARS]
    return None


def salvage(body: Any) -> Salvage:
    if not isinstance(body, Mapping):
        return Salvage(None, None, None, ())
    job_id = _job_id(body.get("job_id"))
    # A too-long reference is cut to the column, so the job row that carries the error rows
    # (and their reason: the reference's length) can still be created.
    model = body.get("model")
    ok_model = isinstance(model, str) and model and not unstorable(model)
    model = model[: bounds.MODEL_REF_CHARS] if ok_model else None
    total = _int(body.get("total"))
    if total is not None and not 1 <= total <= bounds.INT32_MAX:
        total = None
    items: list[tuple[int, str | None]] = []
    seen: set[int] = set()
    raw_items = body.get("items")
    for raw in raw_items if isinstance(raw_items, list) else []:
        if not isinstance(raw, Mapping):
            continue
        index = _int(raw.get("index"))
        if index is None or not 0 <= index < bounds.INT32_MAX or index in seen:
            continue
        if total is not None and index >= total:
            continue
        seen.add(index)
        items.append((index, _ext_id(raw.get("id"))))
    return Salvage(job_id, model, total, tuple(items))
