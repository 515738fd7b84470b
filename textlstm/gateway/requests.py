"""What an HTTP request may say, checked without I/O: the submit body's shape, the results
format, and the JSON error document every refusal uses.

Only the *shape* of the JSON is checked here (an object, known keys, a list of items, a
timestamp string); the job itself (items, model reference, metadata, priority, webhook,
limits) is validated by `Client.submit`, the same code as every Python producer, so the
gateway cannot accept a job a producer would refuse or the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from textlstm.errors import ValidationError
from textlstm.wire.messages import Limits, parse_timestamp, show


class ApiError(Exception):
    """A refusal: the HTTP status, the request field at fault (None: the request as a whole)
    and a message that says what to change. Rendered by `error_body`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers or {}


def error_body(field: str | None, message: str, request_id: str | None = None) -> dict[str, Any]:
    """`{"error": {"field": …, "message": …}}`, plus the request id on a 500 (the key to the
    server's log line: the client never sees a stack trace)."""
    error: dict[str, Any] = {"field": field, "message": message}
    if request_id is not None:
        error["request_id"] = request_id
    return {"error": error}


class SubmitItem(BaseModel):
    """One entry of `texts` or `items` as an object: a text and an optional id of the producer's."""

    model_config = ConfigDict(extra="forbid")

    text: str
    id: str | int | None = Field(
        default=None,
        description="Unique in the job (string or integer, at most 256 characters); comes back "
        "with the item's result.",
    )


class SubmitBody(BaseModel):
    """The body of `POST /v1/jobs`, for the OpenAPI schema (validation is `parse_submit` and
    `Client.submit`; this model is never used to parse a request)."""

    model_config = ConfigDict(extra="forbid")

    texts: list[str | SubmitItem] = Field(
        default=None,  # type: ignore[assignment] # absent, never null: see submit_schema
        description="The texts to classify: strings, or `{id, text}` objects whose id comes "
        "back with the result (give `texts` or `items`, the same thing by two names).",
    )
    items: list[str | SubmitItem] = Field(
        default=None,  # type: ignore[assignment]
        description="The same as `texts` (give one of them).",
    )
    model: str | None = Field(
        default=None,
        description="`name`, `name@3` or `name@alias`; default TEXTLSTM_DEFAULT_MODEL.",
    )
    priority: Literal["high", "normal", "bulk"] = Field(
        default="normal", description="Which queue: workers drain higher priorities first."
    )
    deadline: str | None = Field(
        default=None,
        description="ISO 8601 time (UTC without an offset): items not started by then are "
        "stored as `expired`.",
    )
    expires: float | None = Field(
        default=None, description="Seconds from now; the same as a deadline (give one)."
    )
    metadata: dict[str, Any] | None = Field(
        default=None, description="A JSON object stored with the job (at most 16 KiB)."
    )
    webhook: str | None = Field(
        default=None, description="An http(s) URL the signed final event is POSTed to."
    )
    job_id: str | None = Field(
        default=None,
        description="A UUID chosen by the producer; sending the same job again is safe.",
    )


def submit_schema(limits: Limits) -> dict[str, Any]:
    """SubmitBody's JSON schema with what pydantic cannot say: exactly one of `texts` and
    `items`, and this gateway's item limits (TEXTLSTM_MAX_JOB_ITEMS, _MAX_TEXT_CHARS), so a
    client generated from the schema knows them."""
    schema = SubmitBody.model_json_schema()
    item = schema.pop("$defs")["SubmitItem"]  # inlined: a $ref would point into the API doc
    item["properties"]["text"]["maxLength"] = limits.max_text_chars
    # Either key takes what Client.submit takes: strings, {id, text} objects, or both mixed.
    entry = {"anyOf": [{"type": "string", "maxLength": limits.max_text_chars}, item]}
    props = schema["properties"]
    for key in ("texts", "items"):
        props[key]["items"] = entry
        props[key].pop("default", None)
        props[key]["minItems"] = 1
        props[key]["maxItems"] = limits.max_job_items
    schema["oneOf"] = [{"required": ["texts"]}, {"required": ["items"]}]
    return schema


def batch_schema(limits: Limits, max_jobs: int) -> dict[str, Any]:
    """The body of `POST /v1/jobs:batch`: `{"jobs": [...]}`, each a submit body."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["jobs"],
        "properties": {
            "jobs": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_jobs,
                "items": submit_schema(limits),
                "description": "Jobs, each the body of `POST /v1/jobs`; all accepted or none.",
            }
        },
    }


def parse_batch(doc: Any, max_jobs: int) -> list[SubmitRequest]:
    """Check the shape of a decoded batch body and of each job in it (`parse_submit`);
    ApiError(422) names the field as `jobs[i].<field>`."""
    if not isinstance(doc, dict):
        raise ApiError(422, f"the body must be a JSON object, got {show(doc)}", field="body")
    unknown = sorted(set(doc) - {"jobs"})
    if unknown:
        raise ApiError(422, "unknown field (known: jobs)", field=str(unknown[0])[:100])
    jobs = doc.get("jobs")
    if not isinstance(jobs, list) or not jobs:
        raise ApiError(422, f"must be a non-empty JSON array, got {show(jobs)}", field="jobs")
    if len(jobs) > max_jobs:
        raise ApiError(
            422,
            f"{len(jobs)} jobs, more than {max_jobs} (TEXTLSTM_API_MAX_BATCH_JOBS)",
            field="jobs",
        )
    out = []
    for i, job in enumerate(jobs):
        try:
            out.append(parse_submit(job))
        except ApiError as exc:
            inner = "" if exc.field in (None, "body") else f".{exc.field}"
            raise ApiError(exc.status, exc.message, field=f"jobs[{i}]{inner}") from None
    return out


def batch_field(exc: ValidationError, reqs: list[SubmitRequest]) -> str | None:
    """`request_field` for `Client.submit_many`'s `jobs[i].items[3]`: the body's key for i."""
    field = getattr(exc, "field", None)
    if field is None or not field.startswith("jobs["):
        return field
    head, _, rest = field.partition("].")
    index = int(head[len("jobs[") :].rstrip("]"))
    if not rest:
        return head if head.endswith("]") else head + "]"
    inner = request_field(ValidationError("", field=rest), reqs[index].key)
    return f"{head}].{inner}"


class ErrorDetail(BaseModel):
    field: str | None = Field(description="The request field at fault; null: the whole request.")
    message: str = Field(description="What is wrong and what to change.")
    request_id: str | None = Field(
        default=None, description="On a 500 only: the key to the gateway's log line."
    )


class ErrorBody(BaseModel):
    """Every refusal's body."""

    error: ErrorDetail


SUBMIT_KEYS = frozenset(SubmitBody.model_fields)


@dataclass(frozen=True)
class SubmitRequest:
    """A submit body whose shape is right, ready for `Client.submit`; `key` is `texts` or
    `items`, whichever the body used (errors about an item name it)."""

    key: str
    entries: list[Any]
    model: str | None
    priority: str
    deadline: datetime | None
    expires: float | None
    metadata: Any
    webhook: Any
    job_id: Any


def parse_submit(doc: Any) -> SubmitRequest:
    """Check the shape of a decoded submit body; ApiError(422) names the field."""
    if not isinstance(doc, dict):
        raise ApiError(422, f"the body must be a JSON object, got {show(doc)}", field="body")
    unknown = sorted(set(doc) - SUBMIT_KEYS)
    if unknown:
        known = ", ".join(sorted(SUBMIT_KEYS))
        raise ApiError(422, f"unknown field (known: {known})", field=str(unknown[0])[:100])
    given = [k for k in ("texts", "items") if k in doc]
    if len(given) != 1:
        raise ApiError(422, "give exactly one of `texts` and `items`", field="texts")
    key = given[0]
    entries = doc[key]
    if not isinstance(entries, list):
        raise ApiError(422, f"must be a JSON array, got {show(entries)}", field=key)
    for name in ("model", "deadline"):
        if doc.get(name) is not None and not isinstance(doc[name], str):
            raise ApiError(422, f"must be a string, got {show(doc[name])}", field=name)
    priority = doc.get("priority", "normal")
    expires = doc.get("expires")
    if expires is not None and (isinstance(expires, bool) or not isinstance(expires, int | float)):
        raise ApiError(422, f"must be a number of seconds, got {show(expires)}", field="expires")
    try:
        deadline = parse_timestamp(doc.get("deadline"), "deadline")
    except ValidationError as exc:
        raise ApiError(422, str(exc), field="deadline") from None
    return SubmitRequest(
        key=key,
        entries=entries,
        model=doc.get("model"),
        priority=priority,
        deadline=deadline,
        expires=None if expires is None else float(expires),
        metadata=doc.get("metadata"),
        webhook=doc.get("webhook"),
        job_id=doc.get("job_id"),
    )


def request_field(exc: ValidationError, key: str) -> str | None:
    """The request field a producer ValidationError is about: its `field`, with the
    validator's `items` spelled as the body's key (`texts[3]` for a `texts` body)."""
    field = getattr(exc, "field", None)
    if field is not None and (field == "items" or field.startswith("items[")):
        return key + field[len("items") :]
    return field


#: Results formats: ?format= value -> media type.
FORMATS = {"jsonl": "application/x-ndjson", "csv": "text/csv"}


def pick_format(param: str | None, accept: str | None) -> str:
    """`?format=` if given, else the first of the Accept header's types we serve, else JSON
    Lines. An unknown `?format=` is a 422; an Accept we cannot serve falls back to JSON Lines
    (what most HTTP clients send is `*/*`)."""
    if param is not None:
        if param not in FORMATS:
            raise ApiError(422, f"must be one of {', '.join(FORMATS)}", field="format")
        return param
    for part in (accept or "").split(","):
        media = part.split(";")[0].strip().lower()
        if media in ("text/csv",):
            return "csv"
        if media in ("application/x-ndjson", "application/jsonl", "application/json-lines"):
            return "jsonl"
    return "jsonl"


def is_json(content_type: str | None) -> bool:
    """`application/json` or a `+json` type, any parameters (charset) allowed."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media == "application/json":
        return True
    return media.startswith("application/") and media.endswith("+json")
