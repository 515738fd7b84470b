"""The HTTP gateway: a thin FastAPI layer over `textlstm.client.Client` and the registry.

Every endpoint parses the request (`textlstm.gateway.requests`, pure), calls one library
function (`Client.submit`, `status`, `iter_results`, `cancel`; the registry's
`version_summary`), and renders what it returns in the same documents the admin CLI prints
with `--json`. No model is loaded and torch is never imported: the gateway runs on the base
install plus the `api` extra.

Errors: a `textlstm` error becomes a JSON body `{"error": {"field", "message"}}` with the
status that fits (ValidationError 422, NotFoundError 404, QueueFullError 429 with Retry-After,
StoreError/BrokerError 503); anything else is logged with a request id and answered 500 with
that id only, so no stack trace or internal detail ever reaches a client. Tokens and URLs are
never logged (the Authorization header is read, hashed and dropped; URLs go through mask_url).

Blocking work (SQL, Redis) runs in Starlette's thread pool; the request body is read on the
event loop with a byte cap, so an oversized body is refused before it is in memory.
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as FastPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from textlstm.client.jobs import CSV_COLUMNS, Client, ItemResult
from textlstm.errors import (
    BrokerError,
    ConfigError,
    NotFoundError,
    QueueFullError,
    StoreError,
    TextlstmError,
    ValidationError,
)
from textlstm.gateway.auth import TokenEntry, allows, authenticate
from textlstm.gateway.guard import Guard
from textlstm.gateway.metrics import GatewayMetrics
from textlstm.gateway.requests import (
    FORMATS,
    ApiError,
    ErrorBody,
    batch_field,
    batch_schema,
    error_body,
    is_json,
    parse_batch,
    parse_submit,
    pick_format,
    request_field,
    submit_schema,
)
from textlstm.gateway.responses import Accepted, BatchAccepted, CancelDoc, JobDoc
from textlstm.settings import Settings, get_settings, mask_url
from textlstm.wire.messages import Limits
from textlstm.wire.refs import ALIAS_RE, NAME_RE, VERSION_RE

log = logging.getLogger("textlstm.gateway")

#: Rows rendered per chunk of a streamed results response (one thread-pool hop each).
RESULTS_CHUNK_ROWS = 500
#: Longest a /healthz probe of the broker or the database may take.
HEALTH_TIMEOUT_S = 3.0

_ERRORS: dict[int, str] = {
    401: "No token, an unknown token, or no tokens configured (`WWW-Authenticate: Bearer`).",
    403: "The token's scope does not cover this endpoint.",
    404: "No such job, model version or alias.",
    413: "The body is larger than TEXTLSTM_API_MAX_BODY_BYTES.",
    415: "The body is not application/json.",
    422: "A field breaks the schema or a limit: `error.field` names it.",
    429: "The queue is full (backpressure): retry after `Retry-After` seconds.",
    500: "A bug: the body holds only a request id (also in `X-Request-Id`).",
    503: "The broker or the database cannot be reached.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each with the JSON error body."""
    return {code: {"model": ErrorBody, "description": _ERRORS[code]} for code in codes}


#: The errors any authenticated endpoint may answer.
_V1 = (401, 403, 422, 500, 503)

#: A model reference's spelling (textlstm.wire.refs), so the schema says what `{ref}` may be.
REF_PATTERN = f"^{NAME_RE.pattern}(@({VERSION_RE.pattern}|{ALIAS_RE.pattern}))?$"

_bearer = HTTPBearer(auto_error=False, description="A token from `textlstm-admin api-token`.")


def _error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(
        error_body(exc.field, exc.message), status_code=exc.status, headers=exc.headers
    )


def as_api_error(exc: TextlstmError, settings: Settings, *, field: str | None = None) -> ApiError:
    """The HTTP refusal for a library error (its message is written for users: safe to show)."""
    message = str(exc)
    if isinstance(exc, QueueFullError):
        return ApiError(429, message, headers={"Retry-After": str(settings.api_retry_after_s)})
    if isinstance(exc, BrokerError | StoreError):
        return ApiError(503, message)
    if isinstance(exc, NotFoundError):
        return ApiError(404, message, field=field)
    if isinstance(exc, ValidationError | ConfigError):
        return ApiError(422, message, field=field or getattr(exc, "field", None))
    return ApiError(400, message, field=field)


class Gateway:
    """What the endpoints share: the settings, the accepted tokens, the client and metrics."""

    def __init__(self, settings: Settings) -> None:
        from textlstm.store.db import make_engine, make_session_factory

        self.settings = settings
        self.tokens: tuple[TokenEntry, ...] = settings.api_token_entries  # env var + file
        # One engine per process (uvicorn's factory runs in each worker, after the fork): a
        # request borrows a pooled connection instead of connecting (bench/results/gateway.md).
        # The pool is sized for Starlette's thread pool (40 threads) without exhausting the
        # database's connections: more concurrent requests wait for a connection.
        pool = {} if settings.database_url.startswith("sqlite") else {"pool_size": 10}
        self.engine = make_engine(
            settings.database_url,
            sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
            **pool,  # type: ignore[arg-type]
        )
        self.client = Client(settings, session_factory=make_session_factory(self.engine))
        self.metrics = GatewayMetrics()

    def require(self, scope: str) -> Callable[..., Awaitable[TokenEntry]]:
        """A dependency admitting a bearer token whose scope covers `scope` (401 / 403)."""

        async def check(  # async: a hash and compares, no reason for a thread-pool hop
            credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
        ) -> TokenEntry:
            challenge = {"WWW-Authenticate": "Bearer"}
            if not self.tokens:
                raise ApiError(
                    401,
                    "no API tokens are configured on this gateway "
                    "(TEXTLSTM_API_TOKENS, TEXTLSTM_API_TOKENS_FILE)",
                    field="Authorization",
                    headers=challenge,
                )
            if credentials is None or credentials.scheme.lower() != "bearer":
                raise ApiError(
                    401, "send `Authorization: Bearer <token>`", field="Authorization",
                    headers=challenge,
                )  # fmt: skip
            entry = authenticate(credentials.credentials, self.tokens)
            if entry is None:
                raise ApiError(401, "unknown token", field="Authorization", headers=challenge)
            if not allows(entry, scope):
                raise ApiError(
                    403, f"this token's scope is {entry.scope}; this needs {scope}",
                    field="Authorization",
                )  # fmt: skip
            return entry

        return check

    async def call(self, fn: Callable[..., Any], *args: Any, field: str | None = None,
                   **kwargs: Any) -> Any:  # fmt: skip
        """`fn(*args, **kwargs)` in the thread pool, library errors as ApiError."""
        try:
            return await run_in_threadpool(fn, *args, **kwargs)
        except TextlstmError as exc:
            raise as_api_error(exc, self.settings, field=field) from None


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused with 413 once it passes `max_bytes`: first by its declared
    Content-Length, then by counting as it streams in (a chunked or lying client)."""
    declared = request.headers.get("content-length")
    too_big = f"the body is larger than {max_bytes} bytes (TEXTLSTM_API_MAX_BODY_BYTES)"
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "Content-Length must be a number of bytes", field="Content-Length")
        if int(declared) > max_bytes:
            raise ApiError(413, too_big, field="body")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, too_big, field="body")
        chunks.append(chunk)
    return b"".join(chunks)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_json(body: bytes) -> Any:
    """Strict JSON (no NaN or Infinity, UTF-8); ApiError(422) on anything else."""
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = " ".join(str(exc).split())[:160]
        raise ApiError(422, f"the body is not valid JSON: {reason}", field="body") from None


def _render(rows: Iterator[ItemResult], fmt: str) -> Iterator[str]:
    """Rows as JSON Lines (each `ItemResult.to_json`, as `results --format jsonl` prints
    them) or CSV (`results --format csv`), in chunks of RESULTS_CHUNK_ROWS rows."""
    try:
        if fmt == "csv":
            buf = io.StringIO()
            writer = csv.writer(buf)
            writer.writerow(CSV_COLUMNS)
            for chunk in iter(lambda: list(itertools.islice(rows, RESULTS_CHUNK_ROWS)), []):
                for r in chunk:
                    writer.writerow(r.csv_row())
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
            if buf.tell():
                yield buf.getvalue()
            return
        for chunk in iter(lambda: list(itertools.islice(rows, RESULTS_CHUNK_ROWS)), []):
            yield "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in chunk)
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()  # ends the database session now, not when the generator is collected


def _limited(rows: Iterator[ItemResult], limit: int | None) -> Iterator[ItemResult]:
    try:
        yield from rows if limit is None else itertools.islice(rows, limit)
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()


def _probe_broker(gw: Gateway) -> None:
    """A Redis PING, or on amqp:// one AMQP handshake (a refused login or vhost is the one
    line of `textlstm.broker_options.probe_amqp`, naming TEXTLSTM_BROKER_URL)."""
    from textlstm.broker_options import is_amqp, probe_amqp
    from textlstm.wire.redis_layout import redis_client

    s = gw.settings
    if is_amqp(s.broker_url):
        probe_amqp(s.broker_url, s.broker_transport_options, timeout=HEALTH_TIMEOUT_S)
        return
    client = redis_client(s.broker_url, timeout=HEALTH_TIMEOUT_S)
    try:
        client.ping()
    finally:
        client.close()


def _probe_database(gw: Gateway) -> None:
    from textlstm.store.jobs import list_jobs

    with gw.client.session() as session:
        list_jobs(session=session, limit=1)  # reads a table: an unmigrated database fails


def _reason(exc: BaseException, settings: Settings) -> str:
    """One line, URLs masked: a library error's message, or the exception's type and first
    line (redis-py and psycopg name the host and port, never the password)."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {HEALTH_TIMEOUT_S:g}s"
    text = (str(exc).strip().splitlines() or [""])[0]
    for url in (settings.broker_url, settings.database_url):
        text = text.replace(url, mask_url(url))
    return text[:300] if isinstance(exc, TextlstmError) else f"{type(exc).__name__}: {text[:300]}"


def create_app(settings: Settings | None = None) -> FastAPI:
    """The gateway's ASGI app for `settings` (default: the process settings), as
    `textlstm-admin serve-api` runs it (a factory: each uvicorn worker builds its own)."""
    gw = Gateway(settings or get_settings())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        gw.engine.dispose()  # the pooled connections close with the process's app

    app = FastAPI(
        lifespan=lifespan,
        title="textlstm gateway",
        version="1",
        summary="Submit classification jobs, follow them and read their results over HTTP.",
        description='See docs/gateway.md. Errors are `{"error": {"field", "message"}}`.',
    )
    app.state.gateway = gw
    read, submit = gw.require("read"), gw.require("submit")
    limits = Limits.from_settings(gw.settings)

    app.add_middleware(Guard, metrics=gw.metrics)  # request id, metrics, the bare 500

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = (exc.errors() or [{}])[0]
        loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "header")]
        message = str(first.get("msg") or "invalid value")
        return _error_response(ApiError(422, message, field=".".join(loc) or None))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(None, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.post(
        "/v1/jobs",
        status_code=202,
        tags=["jobs"],
        summary="Submit a job",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": submit_schema(limits)}},
            }
        },
        responses={
            202: {"model": Accepted, "description": "Accepted: the job id and where to follow it."},
            **errors(*_V1, 413, 415, 429),
        },
    )
    async def submit_job(request: Request, _: TokenEntry = Depends(submit)) -> JSONResponse:  # noqa: B008
        """Validated exactly as `Client.submit` validates a Python producer's job, then
        published through the one publisher; never blocks on a full queue (429 instead)."""
        if not is_json(request.headers.get("content-type")):
            raise ApiError(415, "send the job as application/json", field="Content-Type")
        doc = decode_json(await read_body(request, gw.settings.api_max_body_bytes))
        req = parse_submit(doc)
        try:
            job_id = await run_in_threadpool(
                gw.client.submit,
                req.entries,
                model=req.model,
                metadata=req.metadata,
                job_id=req.job_id,
                priority=req.priority,
                deadline=req.deadline,
                expires=req.expires,
                on_full="refuse",
                webhook=req.webhook,
            )
        except NotFoundError as exc:  # the model reference names no registered model
            raise ApiError(422, str(exc), field="model") from None
        except ValidationError as exc:
            raise ApiError(422, str(exc), field=request_field(exc, req.key)) from None
        except TextlstmError as exc:
            raise as_api_error(exc, gw.settings) from None
        gw.metrics.submitted(len(req.entries))
        location = f"/v1/jobs/{job_id}"
        return JSONResponse(
            {
                "job_id": str(job_id),
                "items": len(req.entries),
                "status_url": location,
                "results_url": f"{location}/results",
            },
            status_code=202,
            headers={"Location": location},
        )

    @app.post(
        "/v1/jobs:batch",
        status_code=202,
        tags=["jobs"],
        summary="Submit several jobs at once",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": batch_schema(limits, gw.settings.api_max_batch_jobs)
                    }
                },
            }
        },
        responses={
            202: {
                "model": BatchAccepted,
                "description": "Accepted: each job's id, in the order sent.",
            },
            **errors(*_V1, 413, 415, 429),
        },
    )
    async def submit_batch(request: Request, _: TokenEntry = Depends(submit)) -> JSONResponse:  # noqa: B008
        """`Client.submit_many`: every job validated as `POST /v1/jobs` validates one, then
        all rows written in one statement and published as envelopes in one broker round
        trip. All or nothing: one invalid job refuses the batch (422, `jobs[i].<field>`).
        One request per job costs ~2 ms of gateway CPU; a batch amortises it (docs/gateway.md)."""
        if not is_json(request.headers.get("content-type")):
            raise ApiError(415, "send the jobs as application/json", field="Content-Type")
        doc = decode_json(await read_body(request, gw.settings.api_max_body_bytes))
        reqs = parse_batch(doc, gw.settings.api_max_batch_jobs)
        specs = [
            {
                "texts": r.entries,
                "model": r.model,
                "metadata": r.metadata,
                "job_id": r.job_id,
                "priority": r.priority,
                "deadline": r.deadline,
                "expires": r.expires,
                "webhook": r.webhook,
            }
            for r in reqs
        ]
        try:
            ids = await run_in_threadpool(gw.client.submit_many, specs, on_full="refuse")
        except ValidationError as exc:
            raise ApiError(422, str(exc), field=batch_field(exc, reqs)) from None
        except TextlstmError as exc:
            raise as_api_error(exc, gw.settings) from None
        gw.metrics.submitted(sum(len(r.entries) for r in reqs), jobs=len(reqs))
        return JSONResponse(
            {
                "jobs": [
                    {
                        "job_id": str(jid),
                        "items": len(r.entries),
                        "status_url": f"/v1/jobs/{jid}",
                        "results_url": f"/v1/jobs/{jid}/results",
                    }
                    for jid, r in zip(ids, reqs, strict=True)
                ]
            },
            status_code=202,
        )

    @app.get(
        "/v1/jobs/{job_id}",
        tags=["jobs"],
        summary="A job's status, counts and timings",
        response_model=None,
        responses={200: {"model": JobDoc, "description": "The job."}, **errors(*_V1, 404)},
    )
    async def job_status(job_id: uuid.UUID, _: TokenEntry = Depends(read)) -> dict[str, Any]:  # noqa: B008
        """The document `textlstm-admin jobs show --json` prints."""

        def doc() -> dict[str, Any]:
            st = gw.client.status(job_id)
            hook = gw.client.webhook(job_id)
            return st.to_json() | {"webhook": hook.to_json() if hook is not None else None}

        return await gw.call(doc, field="job_id")  # type: ignore[no-any-return]

    @app.get(
        "/v1/jobs/{job_id}/results",
        tags=["jobs"],
        summary="A job's stored results, streamed",
        responses={
            200: {
                "description": "JSON Lines (one `results --format jsonl` row each) or CSV.",
                "content": {media: {"schema": {"type": "string"}} for media in FORMATS.values()},
            },
            **errors(*_V1, 404),
        },
    )
    async def job_results(
        request: Request,
        job_id: uuid.UUID,
        format: Literal["jsonl", "csv"] | None = Query(  # noqa: A002, B008
            None, description="jsonl or csv (else by the Accept header; default jsonl)."
        ),
        after: int = Query(-1, ge=-1, le=2**31 - 1, description="Items with a higher index."),  # noqa: B008
        limit: int | None = Query(None, ge=1, le=10_000_000, description="At most this many."),  # noqa: B008
        _: TokenEntry = Depends(read),  # noqa: B008
    ) -> StreamingResponse:
        """Rows in item order from `after` on (a cursor: pass the last row's `item_index`),
        read from SQL in pages on the primary key as they are sent, so memory stays flat
        whatever the job's size. A page with fewer than `limit` rows is the last one."""
        fmt = pick_format(format, request.headers.get("accept"))
        rows = await gw.call(
            gw.client.iter_results, job_id, after=None if after < 0 else after, field="job_id"
        )
        return StreamingResponse(_render(_limited(rows, limit), fmt), media_type=FORMATS[fmt])

    @app.post(
        "/v1/jobs/{job_id}/cancel",
        tags=["jobs"],
        summary="Cancel a job",
        response_model=None,
        responses={200: {"model": CancelDoc, "description": "What it did."}, **errors(*_V1, 404)},
    )
    async def cancel_job(job_id: uuid.UUID, _: TokenEntry = Depends(submit)) -> dict[str, Any]:  # noqa: B008
        """`Client.cancel`: idempotent; `changed` is false when the job was already final."""
        r = await gw.call(gw.client.cancel, job_id, field="job_id")
        return {
            "job_id": str(r.job_id),
            "changed": r.changed,
            "previous": r.previous,
            "status": r.status,
            "cancelled": r.cancelled,
            "ok": r.ok,
            "expected": r.expected,
        }

    @app.get(
        "/v1/models",
        tags=["models"],
        summary="Registered model versions",
        responses=errors(*_V1),
    )
    async def list_models(
        name: str | None = Query(  # noqa: B008
            None, pattern=f"^{NAME_RE.pattern}$", description="Only this model."
        ),
        _: TokenEntry = Depends(read),  # noqa: B008
    ) -> list[dict[str, Any]]:
        """What `textlstm-admin models list --json` prints, one object per version."""

        def docs() -> list[dict[str, Any]]:
            from textlstm.store.model_versions import list_model_versions
            from textlstm.store.registry import aliases_by_version, version_summary

            with gw.client.session() as session:
                aliases = aliases_by_version(session=session, name=name)
                return [
                    version_summary(mv, aliases)
                    for mv in list_model_versions(session=session, name=name)
                ]

        return await gw.call(docs, field="name")  # type: ignore[no-any-return]

    @app.get(
        "/v1/models/{ref}",
        tags=["models"],
        summary="One model version",
        responses=errors(*_V1, 404),
    )
    async def show_model(
        ref: str = FastPath(  # noqa: B008
            pattern=REF_PATTERN, description="`name`, `name@3` or `name@alias`."
        ),
        _: TokenEntry = Depends(read),  # noqa: B008
    ) -> dict[str, Any]:
        """What `textlstm-admin models show REF --json` prints (`name`, `name@3`, `name@alias`)."""

        def doc() -> dict[str, Any]:
            from textlstm.store.registry import resolve, version_details

            with gw.client.session() as session:
                return version_details(session=session, mv=resolve(session=session, ref=ref))

        return await gw.call(doc, field="ref")  # type: ignore[no-any-return]

    @app.get(
        "/healthz",
        tags=["operations"],
        summary="Broker and database reachable",
        responses={
            503: {"description": "One of them is not: `checks` says why."},
            500: errors(500)[500],
        },
    )
    async def healthz() -> JSONResponse:
        """Each dependency probed with a short timeout; 200 when both answer, 503 otherwise,
        with the reason per dependency (URLs masked)."""
        checks: dict[str, Any] = {}
        for name, probe in (("broker", _probe_broker), ("database", _probe_database)):
            try:
                await asyncio.wait_for(run_in_threadpool(probe, gw), timeout=HEALTH_TIMEOUT_S + 1)
                checks[name] = {"ok": True}
            except Exception as exc:  # noqa: BLE001 - any failure is the reason reported
                checks[name] = {"ok": False, "reason": _reason(exc, gw.settings)}
        ok = all(c["ok"] for c in checks.values())
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": checks},
            status_code=200 if ok else 503,
        )

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
        responses={500: errors(500)[500]},
    )
    async def metrics() -> Response:
        body, media_type = gw.metrics.render()
        return Response(body, media_type=media_type)

    return app
