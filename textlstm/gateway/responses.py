"""What the gateway's successful responses hold, as pydantic models: for the OpenAPI schema
only, so a client generated from it (or written by hand against it, docs/gateway.md) knows
the fields. The endpoints still return the documents the admin CLI prints with `--json`
(`JobStatus.to_json` and friends), unvalidated; tests/gateway/test_openapi_doc.py checks real
responses against these models, so the two cannot drift apart.

No model forbids extra fields: a field added later must not break an existing client.
Timestamps are ISO 8601 strings, as `datetime.isoformat` writes them (SQLite's carry no
offset, so they are not declared `date-time`, which requires one).
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field

from textlstm.store.models import JOB_STATUSES, WEBHOOK_STATES

JobStatusName = Literal[JOB_STATUSES]  # type: ignore[valid-type]
WebhookState = Literal[WEBHOOK_STATES]  # type: ignore[valid-type]


class Accepted(BaseModel):
    """A job accepted (202): its id and where to follow it."""

    job_id: uuid.UUID
    items: int = Field(description="Items in the job.")
    status_url: str = Field(description="`GET` it for the job's status.")
    results_url: str = Field(description="`GET` it for the job's results.")


class BatchAccepted(BaseModel):
    """Every job of a batch accepted (202), in the order sent."""

    jobs: list[Accepted]


class WebhookDoc(BaseModel):
    """A job's webhook delivery (`url` shown as its origin only)."""

    url: str
    state: WebhookState  # type: ignore[valid-type]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: str | None
    delivered_at: str | None


class JobDoc(BaseModel):
    """A job's status, counts and timings: what `textlstm-admin jobs show --json` prints."""

    job_id: uuid.UUID
    status: JobStatusName  # type: ignore[valid-type]
    model_ref: str = Field(description="The reference as submitted (`name@alias`).")
    model: str | None = Field(description="`name@version`, once a worker has resolved it.")
    expected: int
    ok: int
    errors: int = Field(description="Items that failed (expired and cancelled included).")
    expired: int
    cancelled: int
    submitted_at: str
    started_at: str | None
    finished_at: str | None
    metadata: dict[str, Any] | None
    webhook: WebhookDoc | None


class CancelDoc(BaseModel):
    """What a cancel did: `changed` is false when the job was already final."""

    job_id: uuid.UUID
    changed: bool
    previous: JobStatusName  # type: ignore[valid-type]
    status: JobStatusName  # type: ignore[valid-type]
    cancelled: int = Field(description="Items this call marked cancelled.")
    ok: int
    expected: int
