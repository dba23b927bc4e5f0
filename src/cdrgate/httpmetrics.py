"""The HTTP metrics middleware and the ``/metrics`` endpoint.

Requests are labelled with the endpoint template (``cdr/download``), never the raw path, so a
client cannot mint new series. Operational endpoints (metrics, health) are not API traffic
and are left out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cdrgate import metrics
from cdrgate.api.envelope import ERRNO_NOTE, PRIVATE_HEADERS
from cdrgate.api.openapi import OPENAPI_PATH
from cdrgate.api.routes import ENDPOINTS, STANDARD_METHODS
from cdrgate.clock import Clock
from cdrgate.storage.db import Database

METRICS_PATH = "/metrics"
HEALTH_PATHS = frozenset({"/healthz", "/readyz"})
NOT_API_TRAFFIC = HEALTH_PATHS | {METRICS_PATH}
METHODS = frozenset(STANDARD_METHODS)
# Envelopes are small; a body beyond this is not an error envelope worth parsing.
ENVELOPE_SNIFF_BYTES = 4096


def route_of(path: str) -> str:
    """The endpoint template of a request path: a closed set of names."""
    if path == "/":
        return "index"
    if path == OPENAPI_PATH:
        return "openapi"
    parts = path.split("/", 3)
    if len(parts) == 4 and parts[1] == "api":
        endpoint = parts[3].strip("/")
        return endpoint if endpoint in ENDPOINTS else "unknown"
    return "other"


class HttpMetrics:
    """ASGI middleware: count and time every API request, and note error envelopes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in NOT_API_TRAFFIC:
            await self.app(scope, receive, send)
            return
        route = route_of(scope["path"])
        method = scope["method"] if scope["method"] in METHODS else "other"
        started = time.perf_counter()
        status = 0
        sniff: bytearray | None = None

        async def send_wrapper(message: Message) -> None:
            nonlocal status, sniff
            if message["type"] == "http.response.start":
                status = message["status"]
                content_type = _header(message, b"content-type")
                # An envelope of ours noted its errno as it was sent; any other JSON answer
                # (Starlette's, a handler's own) is read for one.
                if content_type.startswith(b"application/json") and ERRNO_NOTE not in scope:
                    sniff = bytearray()
            elif message["type"] == "http.response.body" and sniff is not None:
                if len(sniff) <= ENVELOPE_SNIFF_BYTES:
                    sniff += message.get("body", b"")
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            metrics.record_request(route, method, status, time.perf_counter() - started)
            noted: str | None = scope.get(ERRNO_NOTE)
            errno = _failed_errno(sniff) if noted is None else noted or None
            if errno is not None:
                metrics.record_api_error(route, errno)


def _header(message: Message, name: bytes) -> bytes:
    for key, value in message.get("headers", []):
        if key.lower() == name:
            return bytes(value).lower()
    return b""


def _failed_errno(body: bytearray | None) -> str | None:
    if not body or len(body) > ENVELOPE_SNIFF_BYTES:
        return None
    try:
        envelope = json.loads(body)
    except ValueError:
        return None
    if isinstance(envelope, dict) and envelope.get("status") == "Failed":
        return str(envelope.get("errno", "other"))
    return None


def metrics_endpoint(db: Database, clock: Clock) -> Callable[[Request], Awaitable[Response]]:
    """The /metrics handler; ``clock`` is the app's (it decides which lockouts still hold)."""

    async def endpoint(_request: Request) -> Response:
        body = await run_in_threadpool(metrics.exposition, db, clock)
        return Response(body, headers={"Content-Type": metrics.CONTENT_TYPE, **PRIVATE_HEADERS})

    return endpoint
