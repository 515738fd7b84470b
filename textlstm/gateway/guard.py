"""The gateway's one middleware: a request id on every response, per-route metrics, and the
catch-all that turns a bug into a bare 500.

A plain ASGI middleware, not Starlette's `BaseHTTPMiddleware` (`@app.middleware("http")`):
that one runs the endpoint in a task of its own and passes the response through memory
streams, about 7% of a one-text `POST /v1/jobs` (docs/gateway.md, "Measured"). Here the
response messages go straight through; only the start message is touched, to add the header.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from textlstm.gateway.metrics import GatewayMetrics
from textlstm.gateway.requests import error_body

log = logging.getLogger("textlstm.gateway")


class Guard:
    """Wraps the app: `X-Request-Id` on every HTTP response, each request observed in
    `metrics` under its route's path template (`unmatched` when no route matched), and an
    unexpected exception logged with the request id and answered 500 with that id alone, so
    no stack trace or internal detail ever reaches a client."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # lifespan
            return
        request_id = uuid.uuid4().hex
        start = time.perf_counter()
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started, status = True, message["status"]
                MutableHeaders(scope=message).append("X-Request-Id", request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:  # noqa: BLE001 - the one place a bug is turned into a 500
            log.exception("request %s %s %s failed", request_id, scope["method"], scope["path"])
            if started:
                raise  # the body is under way: the server can only drop the connection
            status = 500
            body = error_body(None, "internal error; quote the request id to the operator",
                              request_id)  # fmt: skip
            await JSONResponse(body, status_code=500, headers={"X-Request-Id": request_id})(
                scope, receive, send
            )
        finally:
            self.metrics.observe(
                scope["method"], _route(scope), status, time.perf_counter() - start
            )


def _route(scope: dict[str, Any]) -> str:
    """The matched route's path template (FastAPI records the route in the scope)."""
    return getattr(scope.get("route"), "path", "unmatched")
