"""The classify message: its JSON schema, how a job is split into messages, and validation.

Pure functions only (no broker, no database, no torch), shared by the producer, which validates a
whole job before it enqueues anything, and by the worker, which re-validates what it receives
(a producer in another language may have built it). The schema is documented in README.md
("The message, for producers in other languages").

Message body (schema_version 1), sent as the only positional argument of the Celery task
``textlstm.classify`` with JSON serialization::

    {"schema_version": 1,
     "job_id": "3f1c…-uuid",              # chosen by the producer, same in every message of a job
     "model": "sentiment@production",      # name | name@VERSION | name@ALIAS
     "total": 1000,                        # items in the whole job (not in this message)
     "items": [{"index": 0, "id": "a-1", "text": "…"}, …],   # index in [0, total); id optional
     "metadata": {…} | null,               # producer metadata, repeated in every message
     "submitted_at": "2026-11-29T14:00:00+00:00" | null,
     "priority": "high" | "normal" | "bulk",      # optional, default normal (also the queue)
     "deadline": "2026-11-29T14:05:00+00:00" | null,   # optional: items not started by then
                                                       # are stored as `expired`
     "webhook": "https://hooks.example.com/done" | null}   # optional: POSTed when the job ends

`priority`, `deadline` and `webhook` were added without a schema bump: older workers ignore
unknown keys. `webhook` is checked by `textlstm.wire.events.check_webhook_url` (and, at
delivery, against the workers' allow-list); it is sent only when set.

Schema version 2 is an envelope that carries parts of several jobs in one broker message, so a
producer of many small jobs pays the broker's per-message cost once per envelope, not once per
job (`textlstm.client.producer.Producer` coalesces them, as Kafka producers do with `linger.ms`)::

    {"schema_version": 2,
     "messages": [<a version 1 message>, <a version 1 message>, …]}   # 1..message_max_items

Each part is validated on its own: a bad part is rejected (and recorded on its job) while the
others are classified. Workers read both versions.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

from textlstm.errors import ValidationError
from textlstm.wire import limits as bounds
from textlstm.wire.events import check_webhook_url
from textlstm.wire.queues import PRIORITIES
from textlstm.wire.refs import parse_model_ref

_T = TypeVar("_T")

SCHEMA_VERSION = 1
#: The envelope of parts of several jobs (see the module docstring).
ENVELOPE_VERSION = 2
#: The stable Celery task name workers register and producers send to.
TASK_NAME = "textlstm.classify"
#: The storage-derived bounds (textlstm/wire/limits.py says where each comes from).
MAX_ID_CHARS = bounds.EXTERNAL_ID_CHARS
MAX_METADATA_BYTES = bounds.METADATA_BYTES
MAX_METADATA_DEPTH = bounds.METADATA_DEPTH


@dataclass(frozen=True)
class Limits:
    """The bounds a job and its messages must respect (normally taken from Settings); the
    fixed, storage-derived ones are in textlstm/wire/limits.py."""

    max_text_chars: int = 20_000
    max_job_items: int = 1_000_000
    message_max_items: int = 256
    message_max_bytes: int = 1_048_576

    def __post_init__(self) -> None:
        # A job's total and item indices are Integer columns: a larger limit would let a job
        # pass validation that the database then refuses (Settings enforces the same bound).
        if not 1 <= self.max_job_items <= bounds.JOB_ITEMS_MAX:
            raise ValueError(f"max_job_items must be in 1..{bounds.JOB_ITEMS_MAX}")

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        return cls(
            max_text_chars=settings.max_text_chars,
            max_job_items=settings.max_job_items,
            message_max_items=settings.message_max_items,
            message_max_bytes=settings.message_max_bytes,
        )


class Item(NamedTuple):
    """One text of a job; `index` is its position in the job as submitted. A named tuple: it
    is built once per text on both ends, in half a frozen dataclass's time (0.23 vs 0.45 µs)."""

    index: int
    text: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class ClassifyMessage:
    """A validated message: what the worker acts on."""

    job_id: uuid.UUID
    model: str
    total: int
    items: tuple[Item, ...]
    metadata: dict[str, Any] | None = None
    submitted_at: datetime | None = None
    priority: str = "normal"
    deadline: datetime | None = None
    webhook: str | None = None

    def expired(self, now: datetime) -> bool:
        """True when the deadline passed before `now` (the moment processing would start)."""
        return self.deadline is not None and now > self.deadline

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "job_id": str(self.job_id),
            "model": self.model,
            "total": self.total,
            "items": [{"index": i.index, "id": i.id, "text": i.text} for i in self.items],
            "metadata": self.metadata,
            "submitted_at": self.submitted_at.isoformat() if self.submitted_at else None,
            "priority": self.priority,
            "deadline": self.deadline.isoformat() if self.deadline else None,
        } | ({"webhook": self.webhook} if self.webhook is not None else {})


def show(value: Any, width: int = 40) -> str:
    """A short, safe rendering of an untrusted value for a one-line error message.

    Never `repr()` a received value whole: a deeply nested list raises RecursionError, an
    integer over 4,300 digits ValueError, and a long string makes the reason the payload.
    """
    if isinstance(value, str):
        return repr(value[:width]) + ("…" if len(value) > width else "")
    if isinstance(value, bool | float) or value is None:
        return repr(value)
    if isinstance(value, int):
        if -(10**width) < value < 10**width:
            return str(value)
        return f"an integer of {value.bit_length()} bits"
    return f"a {type(value).__name__}"


#: The longest spelling of a UUID that uuid.UUID reads: 'urn:uuid:' and 36 characters.
_JOB_ID_CHARS = 45


def parse_job_id(job_id: str | uuid.UUID) -> uuid.UUID:
    """A UUID in one of uuid.UUID's spellings (hex with or without hyphens, in braces, as a
    URN), in ASCII: uuid.UUID alone also reads non-ASCII digits and any number of hyphens."""
    if isinstance(job_id, uuid.UUID):
        return job_id
    if isinstance(job_id, str) and len(job_id) <= _JOB_ID_CHARS and job_id.isascii():
        try:
            return uuid.UUID(job_id)
        except ValueError:
            pass
    raise ValidationError(f"job id {show(job_id, 60)} is not a UUID")


def unstorable(value: str) -> str | None:
    """Why `value` cannot be stored in a PostgreSQL text or JSONB column, or None if it can.

    PostgreSQL refuses NUL characters and UTF-8 cannot encode lone surrogates (JSON allows both
    as escapes). Found at validation, such an id or metadata value is one clear rejection;
    found at the INSERT, it would fail the whole micro-batch, valid neighbours included.
    """
    if "\x00" in value:
        return "contains a NUL character (\\u0000)"
    if any("\ud800" <= c <= "\udfff" for c in value):
        return "contains a lone surrogate (invalid Unicode)"
    return None


def _check_nesting(metadata: Mapping[str, Any]) -> None:
    """Depth and storable strings (keys included) of a metadata document, in one iterative
    walk: a recursive one is itself what a deep document breaks (RecursionError)."""
    stack: list[tuple[Any, int]] = [(metadata, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, Mapping):
            children: Iterable[Any] = value.values()
            for k in value:
                if isinstance(k, str) and (why := unstorable(k)) is not None:
                    raise ValidationError(f"metadata key {why}")
        else:
            children = value
        for v in children:
            if isinstance(v, str):
                if (why := unstorable(v)) is not None:
                    raise ValidationError(f"metadata {why}")
            elif isinstance(v, Mapping | list | tuple):
                if depth >= MAX_METADATA_DEPTH:
                    raise ValidationError(
                        f"message field 'metadata': nested deeper than {MAX_METADATA_DEPTH} "
                        f"levels; the limit is {MAX_METADATA_DEPTH}"
                    )
                stack.append((v, depth + 1))


#: Compact and unescaped: the size a producer in any language can compute. Built once:
#: json.dumps with any non-default option builds a new encoder per call (+3 µs a message).
_compact_json = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode


def check_metadata(metadata: Any) -> dict[str, Any] | None:
    """Metadata is an optional JSON object with string keys, at most MAX_METADATA_BYTES as
    compact UTF-8 JSON and MAX_METADATA_DEPTH levels deep (textlstm/wire/limits.py)."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping) or not all(isinstance(k, str) for k in metadata):
        raise ValidationError("metadata must be a JSON object (a mapping with string keys)")
    try:
        encoded = _compact_json(dict(metadata))
    except RecursionError:
        raise ValidationError(
            f"message field 'metadata': nested deeper than {MAX_METADATA_DEPTH} levels; "
            f"the limit is {MAX_METADATA_DEPTH}"
        ) from None
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"metadata is not JSON-serialisable: {str(exc)[:120]}") from None
    size = len(encoded.encode(errors="surrogatepass"))
    if size > MAX_METADATA_BYTES:
        raise ValidationError(
            f"message field 'metadata': {size} bytes as compact UTF-8 JSON, over "
            f"{MAX_METADATA_BYTES} bytes (the limit)"
        )
    _check_nesting(metadata)
    return json.loads(encoded)


def _check_text(text: Any, where: str, limits: Limits) -> str:
    if not isinstance(text, str):
        raise ValidationError(f"{where}: text must be a string, got {type(text).__name__}")
    if len(text) > limits.max_text_chars:
        raise ValidationError(
            f"{where}: text is {len(text)} characters; the limit is {limits.max_text_chars} "
            "(TEXTLSTM_MAX_TEXT_CHARS)"
        )
    return text


def _check_id(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        # Database keys are often integers; stored and returned as strings. Compared, not
        # measured: str() of an integer over 4,300 digits raises ValueError.
        if not bounds.EXTERNAL_ID_INT_MIN <= value <= bounds.EXTERNAL_ID_INT_MAX:
            raise ValidationError(
                f"{where}: id is an integer of more than {MAX_ID_CHARS} characters; the limit "
                f"is {MAX_ID_CHARS}"
            )
        value = str(value)
    if isinstance(value, str) and len(value) > MAX_ID_CHARS:
        raise ValidationError(
            f"{where}: id is {len(value)} characters; the limit is {MAX_ID_CHARS}"
        )
    if not isinstance(value, str) or not value:
        raise ValidationError(
            f"{where}: id must be a non-empty string (or integer) of at most {MAX_ID_CHARS} "
            f"characters, got {show(value)}"
        )
    if (why := unstorable(value)) is not None:
        raise ValidationError(f"{where}: id {why}")
    return value


class _RandomIds:
    """Random (version 4) UUIDs from one `os.urandom` call per 256 ids.

    py-spy of a batching producer in bench/pipeline.py found 7% of its samples in `uuid4`, a
    `getrandom` system call per id, slow on a loaded machine; the bytes are the same kind. The
    version and variant bits are set on the integers here, so `UUID(int=…)` has nothing left
    to do (1.6 against 3.4 µs for `UUID(bytes=…, version=4)`). A forked child starts a fresh
    pool, so parent and child never hand out the same id.
    """

    _CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
    _SET = (4 << 76) | (0x8000 << 48)  # version 4, RFC 4122 variant

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: list[int] = []
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._pool = []

    def __call__(self) -> uuid.UUID:
        with self._lock:
            if not self._pool:
                raw = os.urandom(16 * 256)
                clear, set_ = self._CLEAR, self._SET
                self._pool = [
                    int.from_bytes(raw[i : i + 16]) & clear | set_ for i in range(0, len(raw), 16)
                ]
            value = self._pool.pop()
        return uuid.UUID(int=value)


#: A new random job or task id.
new_id = _RandomIds()


def headers_repr(summary: str) -> dict[str, str]:
    """`send_task` options that put a short summary in the `argsrepr`/`kwargsrepr` headers.

    Celery otherwise writes a repr of the arguments there, that is the texts themselves (up to
    1 KiB, visible in Flower and broker tools), and building it took ~40% of `Client.submit`'s
    time for 20,000 texts (cProfile: celery.utils.saferepr).
    """
    return {"argsrepr": f"<{summary}>", "kwargsrepr": "{}"}


def normalize_items(texts: Iterable[str | Mapping[str, Any]], *, limits: Limits) -> list[Item]:
    """Validate producer input and number it; raise ValidationError naming the first bad item.

    Accepts strings or ``{"id": …, "text": …}`` mappings (mixed is fine). Ids, when given, must be
    unique within the job so results can be mapped back without ambiguity.
    """
    if isinstance(texts, str | bytes) or isinstance(texts, Mapping):
        raise ValidationError(
            "texts must be a list of strings or {'id', 'text'} mappings, not a single "
            f"{type(texts).__name__}"
        )
    items: list[Item] = []
    seen_ids: dict[str, int] = {}
    max_items, max_chars = limits.max_job_items, limits.max_text_chars
    for index, entry in enumerate(texts):
        if index >= max_items:
            raise ValidationError(
                f"job has more than {limits.max_job_items} items (TEXTLSTM_MAX_JOB_ITEMS)",
                field="items",
            )
        if type(entry) is str and len(entry) <= max_chars:  # the common case, checked cheaply
            items.append(Item(index, entry, None))
            continue
        items.append(at_field(f"items[{index}]", _check_entry, index, entry, limits, seen_ids))
    if not items:
        raise ValidationError("job is empty: submit at least one text", field="items")
    return items


def _check_entry(index: int, entry: Any, limits: Limits, seen_ids: dict[str, int]) -> Item:
    """One item that is not a short plain string (the slow path of `normalize_items`)."""
    where = f"item {index}"
    if isinstance(entry, Mapping):
        unknown = set(entry) - {"id", "text"}
        if unknown:
            raise ValidationError(f"{where}: unknown key(s) {sorted(map(show, unknown))}")
        if "text" not in entry:
            raise ValidationError(f"{where}: mapping has no 'text'")
        ext_id = _check_id(entry.get("id"), where)
        text = _check_text(entry["text"], where, limits)
    else:
        ext_id, text = None, _check_text(entry, where, limits)
    if ext_id is not None:
        if ext_id in seen_ids:
            raise ValidationError(
                f"{where}: duplicate id {ext_id!r} (also item {seen_ids[ext_id]})"
            )
        seen_ids[ext_id] = index
    return Item(index=index, text=text, id=ext_id)


def split_items(items: Sequence[Item], *, limits: Limits) -> list[tuple[Item, ...]]:
    """Chunk items in order, each chunk within message_max_items and (softly) message_max_bytes."""
    chunks: list[tuple[Item, ...]] = []
    current: list[Item] = []
    size = 0
    for item in items:
        item_bytes = len(item.text.encode()) + 64  # + JSON framing, index and id, roughly
        if current and (
            len(current) >= limits.message_max_items or size + item_bytes > limits.message_max_bytes
        ):
            chunks.append(tuple(current))
            current, size = [], 0
        current.append(item)
        size += item_bytes
    if current:
        chunks.append(tuple(current))
    return chunks


def build_messages(
    texts: Iterable[str | Mapping[str, Any]],
    *,
    job_id: str | uuid.UUID,
    model: str,
    limits: Limits,
    metadata: Mapping[str, Any] | None = None,
    submitted_at: datetime | None = None,
    priority: str = "normal",
    deadline: datetime | None = None,
    webhook: str | None = None,
) -> list[ClassifyMessage]:
    """Validate a whole job and split it into messages; raises before anything can be sent.

    A ValidationError carries the `field` at fault (see `textlstm.errors.ValidationError`)."""
    at_field("model", parse_model_ref, model)
    at_field("webhook", check_webhook_url, webhook)
    jid = at_field("job_id", parse_job_id, job_id)
    meta = at_field("metadata", check_metadata, metadata)
    at_field("priority", check_priority, priority)
    if deadline is not None:
        at_field("deadline", check_timestamp, deadline, "deadline")
    if submitted_at is not None:
        at_field("submitted_at", check_timestamp, submitted_at, "submitted_at")
    items = at_field("items", normalize_items, texts, limits=limits)
    when = submitted_at or datetime.now(UTC)
    return [
        ClassifyMessage(jid, model, len(items), chunk, meta, when, priority, deadline, webhook)
        for chunk in split_items(items, limits=limits)
    ]


def at_field(field: str, check: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """`check(*args, **kwargs)`, with `field` set on a ValidationError that names none yet."""
    try:
        return check(*args, **kwargs)
    except ValidationError as exc:
        if getattr(exc, "field", None) is None:
            exc.field = field
        raise


def check_priority(priority: Any) -> str:
    if priority not in PRIORITIES:
        raise ValidationError(
            f"priority must be one of {', '.join(PRIORITIES)}, got {show(priority)}"
        )
    return priority


_TS_MIN, _TS_MAX = bounds.TIMESTAMP_MIN, bounds.TIMESTAMP_MAX


def check_timestamp(when: Any, field: str) -> datetime:
    """An aware datetime within [TIMESTAMP_MIN, TIMESTAMP_MAX) once its offset is taken out
    (textlstm/wire/limits.py: what both databases store and every admin command reads back)."""
    # One chained comparison on the common path (it runs twice a message). Aware datetimes
    # compare as instants, without the OverflowError that astimezone(UTC) raises for
    # 9999-12-31T23:00-05:00; a naive datetime or a non-datetime raises TypeError.
    try:
        if _TS_MIN <= when < _TS_MAX:
            return when  # type: ignore[no-any-return]
    except TypeError:
        raise ValidationError(
            f"message field {field!r} must be a timezone-aware datetime "
            "(e.g. datetime.now(UTC) + ...)"
        ) from None
    raise ValidationError(
        f"message field {field!r}: {when.isoformat()} is outside {_TS_MIN.isoformat()} "
        f"(included) .. {_TS_MAX.isoformat()} (excluded), in UTC"
    )


def parse_timestamp(value: Any, field: str) -> datetime | None:
    """An optional ISO 8601 field; UTC is assumed when it has no offset."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except (TypeError, ValueError, OverflowError):
        raise ValidationError(f"message {field} {show(value)} is not ISO 8601") from None
    return check_timestamp(when.replace(tzinfo=UTC) if when.tzinfo is None else when, field)


def _int(value: Any, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationError(f"message field {field!r} must be an integer, got {show(value)}")
    return value


def parse_message(body: Any, *, limits: Limits) -> ClassifyMessage:
    """Validate a received message body (a decoded JSON object); unknown keys are ignored."""
    if not isinstance(body, Mapping):
        raise ValidationError(f"message must be a JSON object, got {type(body).__name__}")
    version = body.get("schema_version")
    if version != SCHEMA_VERSION or type(version) is not int:  # not True, not 1.0
        raise ValidationError(
            f"unsupported message schema_version {show(version)} "
            f"(this textlstm reads {SCHEMA_VERSION})"
        )
    jid = parse_job_id(body.get("job_id"))  # type: ignore[arg-type]
    model = body.get("model")
    try:
        parse_model_ref(model)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ValidationError(f"message field 'model': {exc}") from None
    total = _int(body.get("total"), "total")
    if not 1 <= total <= limits.max_job_items:
        raise ValidationError(
            f"message field 'total': {show(total)} is outside 1..{limits.max_job_items} "
            "(TEXTLSTM_MAX_JOB_ITEMS)"
        )
    raw_items = body.get("items")
    if not isinstance(raw_items, list) or not raw_items:
        raise ValidationError("message field 'items' must be a non-empty list")
    items: list[Item] = []
    seen: set[int] = set()
    for n, raw in enumerate(raw_items):
        if not isinstance(raw, Mapping):
            raise ValidationError(f"message item {n} must be an object")
        index = _int(raw.get("index"), f"items[{n}].index")
        if not 0 <= index < total or index in seen:
            raise ValidationError(
                f"message item {n}: index {show(index)} is out of range or repeated "
                f"(unique, in 0..{total - 1})"
            )
        seen.add(index)
        where = f"item {index}"
        text = _check_text(raw.get("text"), where, limits)
        items.append(Item(index, text, _check_id(raw.get("id"), where)))
    return ClassifyMessage(
        jid,
        model,
        total,
        tuple(items),
        check_metadata(body.get("metadata")),
        parse_timestamp(body.get("submitted_at"), "submitted_at"),
        check_priority(body.get("priority") or "normal"),
        parse_timestamp(body.get("deadline"), "deadline"),
        _webhook(body.get("webhook")),
    )


def _webhook(value: Any) -> str | None:
    try:
        return check_webhook_url(value)
    except ValidationError as exc:
        raise ValidationError(f"message field 'webhook': {exc}") from None


def envelope(messages: Sequence[ClassifyMessage]) -> dict[str, Any]:
    """The version 2 body carrying `messages` (parts of one or several jobs)."""
    return {"schema_version": ENVELOPE_VERSION, "messages": [m.to_json() for m in messages]}


@dataclass(frozen=True)
class Parsed:
    """A received body: the valid messages, and each invalid part with why it was refused."""

    messages: tuple[ClassifyMessage, ...]
    rejected: tuple[tuple[Any, ValidationError], ...] = ()


def parse_body(body: Any, *, limits: Limits) -> Parsed:
    """Validate a version 1 message or a version 2 envelope.

    Total: any body gives a Parsed or raises ValidationError. A version 1 message that fails
    raises (the whole message is refused). In an envelope each part stands alone, so one bad
    part never costs its neighbours, even one that makes the validator itself fail; only an
    envelope whose shape is wrong raises.
    """
    try:
        return _parse_body(body, limits)
    except ValidationError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. a mapping whose lookups fail
        raise _unexpected(exc) from None


def _unexpected(exc: Exception) -> ValidationError:
    reason = " ".join(str(exc).split())[:160]
    return ValidationError(f"could not be validated: {type(exc).__name__}: {reason}")


def _parse_body(body: Any, limits: Limits) -> Parsed:
    version = body.get("schema_version") if isinstance(body, Mapping) else None
    if version != ENVELOPE_VERSION or type(version) is not int:
        return Parsed((_parse_one(body, limits),))
    parts = body.get("messages")
    if not isinstance(parts, list) or not parts:
        raise ValidationError("envelope field 'messages' must be a non-empty list")
    if len(parts) > limits.message_max_items:
        raise ValidationError(
            f"envelope carries {len(parts)} messages; the limit is {limits.message_max_items} "
            "(TEXTLSTM_MESSAGE_MAX_ITEMS)"
        )
    ok: list[ClassifyMessage] = []
    rejected: list[tuple[Any, ValidationError]] = []
    for n, part in enumerate(parts):
        try:
            ok.append(_parse_one(part, limits, in_envelope=True))
        except ValidationError as exc:
            rejected.append((part, ValidationError(f"envelope part {n}: {exc}")))
    return Parsed(tuple(ok), tuple(rejected))


def _parse_one(body: Any, limits: Limits, *, in_envelope: bool = False) -> ClassifyMessage:
    """`parse_message`, with any other exception (a validator bug, RecursionError on a
    pathological value) turned into a ValidationError: refused with a reason, alone."""
    try:
        if in_envelope and isinstance(body, Mapping):
            version = body.get("schema_version")
            if version != SCHEMA_VERSION:
                raise ValidationError(
                    f"must be a schema_version {SCHEMA_VERSION} message, got {show(version, 20)}"
                )
        return parse_message(body, limits=limits)
    except ValidationError:
        raise
    except Exception as exc:  # noqa: BLE001 - see the docstring
        raise _unexpected(exc) from None
