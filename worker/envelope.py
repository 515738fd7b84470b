"""The decode boundary: a raw Redis list entry becomes an accepted task message or a refusal.

kombu and Celery read a message's envelope (the JSON object around the body: properties,
headers, body encoding) before any validation of ours runs, and assume it is well formed. A
`body_encoding` kombu does not know, base64 with bad padding, headers that are not an object or
a delivery tag that is a list raise inside the consumer, which Celery treats as unrecoverable:
the process exits, the message comes back, and the next process dies the same way. So the
transport passes every entry through `inspect` before kombu sees it. It accepts what kombu's
Redis transport and Celery's task protocol 2 write for a `textlstm.classify` task with a JSON
body, and refuses everything else with a one-line reason; the transport dead-letters those.

The body is decoded here once (base64, UTF-8, JSON) and handed to the consumer with the
message, so the rules are checked on exactly the bytes the consumer acts on. Pure: no Redis,
no kombu, no Celery.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from textlstm.wire.messages import TASK_NAME
from textlstm.wire.redis_layout import task_argument

#: Longest delivery tag or task id accepted (kombu and Celery write 36-character UUIDs).
MAX_TAG_CHARS = 256
JSON_TYPES = ("application/json",)
UTF8 = ("utf-8", "utf8")


class Refusal(Exception):
    """Why an entry is not a message this worker can take (one line)."""


@dataclass(frozen=True, slots=True)
class Accepted:
    #: The kombu envelope, as kombu's Message reads it.
    payload: dict[str, Any]
    tag: str
    #: The decoded Celery body: [args, kwargs, embed].
    body: list[Any]


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str
    #: The delivery tag when it is a usable string, else None.
    tag: str | None = None
    task_id: str | None = None
    #: The textlstm message (the task's only argument) when it could be read: what the
    #: worker salvages to record error rows on the job.
    message: Any = None


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _encodable(value: str, where: str) -> None:
    try:
        value.encode()
    except UnicodeEncodeError:
        raise Refusal(f"{where} is not valid Unicode (a lone surrogate)") from None


def _optional_str(obj: dict[str, Any], key: str, where: str, limit: int | None = None) -> None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise Refusal(f"{where}.{key} must be a string, got {_type(value)}")
    if limit is not None and value is not None and not 0 < len(value) <= limit:
        raise Refusal(f"{where}.{key} must be 1-{limit} characters, got {len(value)}")
    if value is not None:
        _encodable(value, f"{where}.{key}")


def _properties(payload: dict[str, Any]) -> tuple[dict[str, Any], str]:
    props = payload.get("properties")
    if not isinstance(props, dict):
        raise Refusal(f"properties must be an object, got {_type(props)}")
    tag = props.get("delivery_tag")
    if not isinstance(tag, str) or not 0 < len(tag) <= MAX_TAG_CHARS:
        what = f"{len(tag)} characters" if isinstance(tag, str) else _type(tag)
        raise Refusal(f"properties.delivery_tag must be a 1-{MAX_TAG_CHARS} character string, "
                      f"got {what}")  # fmt: skip
    _encodable(tag, "properties.delivery_tag")
    encoding = props.get("body_encoding")
    if encoding not in (None, "base64"):
        raise Refusal(f"properties.body_encoding {encoding!r:.40} is not one kombu reads "
                      "(base64, or none)")  # fmt: skip
    info = props.get("delivery_info")
    if info is not None:
        if not isinstance(info, dict):
            raise Refusal(f"properties.delivery_info must be an object, got {_type(info)}")
        _optional_str(info, "exchange", "properties.delivery_info")
        _optional_str(info, "routing_key", "properties.delivery_info")
    priority = props.get("priority")
    if priority is not None and (
        not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 255
    ):
        raise Refusal(f"properties.priority must be an integer 0-255, got {priority!r:.20}")
    return props, tag


def _headers(payload: dict[str, Any], task_name: str) -> None:
    headers = payload.get("headers")
    if not isinstance(headers, dict):
        raise Refusal(f"headers must be an object, got {_type(headers)}")
    task = headers.get("task")
    if task is None:
        raise Refusal("headers.task is missing: not a Celery task protocol 2 message")
    if task != task_name:
        raise Refusal(f"headers.task {task!r:.80} is not {task_name!r}, the only task here")
    _optional_str(headers, "id", "headers", MAX_TAG_CHARS)
    _optional_str(headers, "expires", "headers", 64)
    if headers.get("compression") is not None:
        raise Refusal(f"headers.compression {headers['compression']!r:.40}: compressed bodies "
                      "are not accepted")  # fmt: skip
    ctype = payload.get("content-type")
    if ctype not in JSON_TYPES:
        raise Refusal(f"content-type {ctype!r:.60} is not accepted: JSON only")
    cenc = payload.get("content-encoding")
    if cenc is not None and (not isinstance(cenc, str) or cenc.lower() not in UTF8):
        raise Refusal(f"content-encoding {cenc!r:.40} is not accepted: UTF-8 only")


def _decode_body(payload: dict[str, Any], encoding: str | None) -> Any:
    raw = payload.get("body")
    if not isinstance(raw, str) or not raw:
        raise Refusal(f"body must be a non-empty string, got {_type(raw)}")
    try:
        if encoding == "base64":
            text = base64.b64decode(raw, validate=True).decode()
        else:
            raw.encode()  # kombu encodes a plain body to UTF-8: a lone surrogate fails there
            text = raw
    except (binascii.Error, ValueError) as exc:
        if isinstance(exc, UnicodeDecodeError):
            raise Refusal(f"body is not UTF-8: {exc.reason} at byte {exc.start}") from None
        if isinstance(exc, UnicodeEncodeError):
            raise Refusal("body is not valid Unicode (a lone surrogate)") from None
        raise Refusal(f"body is not valid base64: {exc}") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise Refusal(f"body is not JSON: {type(exc).__name__}: {str(exc)[:120]}") from None


def _task_body(body: Any) -> list[Any]:
    if not isinstance(body, list) or len(body) != 3:
        raise Refusal("body is not a Celery protocol 2 task body [args, kwargs, embed]")
    args, kwargs, embed = body
    if not isinstance(args, list) or len(args) != 1:
        raise Refusal("the task takes exactly one positional argument (the message)")
    if kwargs not in ({}, None):
        raise Refusal("the task takes no keyword arguments")
    if embed is not None and not isinstance(embed, dict):
        raise Refusal(f"body embed must be an object, got {_type(embed)}")
    return body


def _lenient_tag(payload: dict[str, Any]) -> str | None:
    """The delivery tag for naming a refused entry, even when the rest is malformed."""
    props = payload.get("properties")
    tag = props.get("delivery_tag") if isinstance(props, dict) else None
    return tag if isinstance(tag, str) and 0 < len(tag) <= MAX_TAG_CHARS else None


def inspect(raw: str | bytes, *, task_name: str = TASK_NAME) -> Accepted | Refused:
    """Accept a raw entry that kombu and Celery can read without raising, or say why not.
    Total: returns for any input, never raises."""
    tag = task_id = message = None
    payload: Any = None
    try:
        try:
            payload = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise Refusal(f"entry is not JSON: {type(exc).__name__}: {str(exc)[:120]}") from None
        if not isinstance(payload, dict):
            raise Refusal(f"entry must be a JSON object, got {_type(payload)}")
        tag = _lenient_tag(payload)
        props, _ = _properties(payload)
        headers = payload.get("headers")
        if isinstance(headers, dict) and isinstance(headers.get("id"), str):
            task_id = headers["id"][:MAX_TAG_CHARS]
        _headers(payload, task_name)
        body = _decode_body(payload, props.get("body_encoding"))
        if isinstance(body, list) and body and isinstance(body[0], list) and body[0]:
            message = body[0][0]
        return Accepted(payload, tag, _task_body(body))
    except Refusal as exc:
        if message is None and isinstance(payload, dict):
            message = task_argument(payload)
        return Refused(str(exc), tag, task_id, message)
    except Exception as exc:  # noqa: BLE001 - the boundary is total: a bug here is a refusal
        return Refused(f"unreadable entry: {type(exc).__name__}: {str(exc)[:200]}", tag, task_id,
                       message)  # fmt: skip
