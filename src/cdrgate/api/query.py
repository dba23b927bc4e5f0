"""The JSON query API (``/v1/...``): parse the request, call the query service, answer.

Unlike the device's API these answer with real HTTP statuses, and errors are RFC 9457
``application/problem+json`` documents: 400 names the parameter, 401 carries the device's
token errno (20004/20005/20006), 503 means the database is unavailable. Every answer, errors
included, may be read by a page on another origin, and OPTIONS answers a browser's CORS
preflight (the headers are in envelope.py, beside the device API's).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from cdrgate.api.context import Services
from cdrgate.api.envelope import PRIVATE_HEADERS, QUERY_CORS_HEADERS, QUERY_METHODS, preflight
from cdrgate.api.streaming import ExportResponse
from cdrgate.errors import ApiError, BadParameter, Errno, StorageUnavailable
from cdrgate.logredact import redact
from cdrgate.services.query import CsvStream, QueryRequest, QueryService
from cdrgate.settings import Settings

log = logging.getLogger("cdrgate.api")

PROBLEM_TYPE = "application/problem+json"
_NO_STORE = PRIVATE_HEADERS
# On every answer of the API: pages on other origins may read it (envelope.py says why that
# is safe). Not on the console's CSV, which shares ``csv_response``: the console is same-origin.
_HEADERS = {**_NO_STORE, **QUERY_CORS_HEADERS}
# The device API's detail names only the query string; here the header is the usual way (an
# empty ``Authorization: Bearer `` is what a script whose login failed sends).
SEND_CREDENTIALS = "no token: send Authorization: Bearer TOKEN (or ?token=TOKEN)"
# A whole-result export usually ends within seconds; a client told to wait retries then.
RETRY_AFTER_S = 5


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    headers = dict(_HEADERS)
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="cdrgate"'
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_TYPE)


def parse(request: Request) -> QueryRequest:
    token = request.query_params.get("token")
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        token = credentials.strip()
    accept = request.headers.get("accept", "")
    return QueryRequest(
        token=token,
        params=tuple(request.query_params.multi_items()),
        wants_csv=wants_csv(accept),
    )


def wants_csv(accept: str) -> bool:
    """Whether an Accept header asks for CSV: ``text/csv`` listed with a weight above 0 and
    not below ``application/json``'s. ``text/csv;q=0`` refuses CSV, and ``application/json,
    text/csv;q=0.1`` prefers JSON (both answered the whole CSV export when any mention of
    ``text/csv`` did); wildcards keep the JSON default."""
    weights: dict[str, float] = {}
    for item in accept.lower().split(","):
        media, *params = (part.strip() for part in item.split(";"))
        if media not in ("text/csv", "application/json"):
            continue
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[media] = max(weights.get(media, 0.0), weight)
    csv = weights.get("text/csv", 0.0)
    return csv > 0 and csv >= weights.get("application/json", 0.0)


Endpoint = Callable[[Request], Awaitable[Response]]


def _answering_problems(handler: Endpoint) -> Endpoint:
    """Every failure becomes a problem document; nothing escapes as a bare 500."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except BadParameter as exc:
            return problem(400, "Bad parameter", exc.reason, parameter=exc.parameter)
        except ApiError as exc:
            if exc.errno == Errno.SERVER_BUSY:  # the export limits (a CSV answer)
                busy = problem(503, "Busy", "too many downloads in progress; retry shortly",
                               errno=exc.errno.value)  # fmt: skip
                busy.headers["Retry-After"] = str(RETRY_AFTER_S)
                return busy
            # Otherwise only authentication raises ApiError here: token missing, unknown, idle.
            detail = SEND_CREDENTIALS if exc.errno == Errno.TOKEN_EMPTY else exc.detail
            return problem(401, "Not authenticated", detail or exc.errno.name.lower(),
                           errno=exc.errno.value)  # fmt: skip
        except StorageUnavailable as exc:
            log.error("storage unavailable: %s", exc)
            # Down, or a statement past its timeout: either way not this request's fault.
            return problem(
                503, "Storage unavailable", "the database is down or did not answer in time"
            )
        except Exception:
            log.exception("unexpected error on GET %s", redact(request.url.path))
            return problem(500, "Internal error", "an unexpected error; see the server log")

    return endpoint


class _FastJSON(JSONResponse):
    """JSONResponse's bytes (compact, UTF-8), encoded by orjson: a 10,000-row page is ~5 MB
    of JSON, and the standard encoder took about a third of its time."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _service(request: Request) -> QueryService:
    services: Services = request.app.state.services
    return services.query


async def cdrs(request: Request) -> Response:
    answer = await run_in_threadpool(_service(request).search, parse(request))
    if isinstance(answer, CsvStream):
        return csv_response(answer, _service(request).settings, _HEADERS)
    body: dict[str, Any] = {"items": answer.items, "next_cursor": answer.next_cursor}
    if answer.total is not None:
        body["total"] = answer.total
    return _FastJSON(body, headers=_HEADERS)


async def changes(request: Request) -> Response:
    answer = await run_in_threadpool(_service(request).changes, parse(request))
    body = {"items": answer.items, "next_after": answer.next_after, "last_seq": answer.last_seq}
    return _FastJSON(body, headers=_HEADERS)


async def stats(request: Request) -> Response:
    groups = await run_in_threadpool(_service(request).stats, parse(request))
    return JSONResponse({"groups": [asdict(g) for g in groups]}, headers=_HEADERS)


async def cors_preflight(request: Request) -> Response:
    """A browser asks before a page on another origin sends ``Authorization``."""
    return preflight(request, QUERY_METHODS)


_ENDPOINTS: dict[str, Endpoint] = {
    "/v1/cdrs": cdrs,
    "/v1/cdrs/changes": changes,
    "/v1/stats": stats,
}


async def elsewhere(request: Request) -> Response:
    """Under /v1/ but no endpoint's: a problem document a script can read (CORS headers
    included), not Starlette's plain-text 404 or 405, which a page on another origin saw
    only as a network error."""
    if request.method == "OPTIONS" and "access-control-request-method" in request.headers:
        # A browser's preflight (a page sending its Bearer token to a mistyped path): a 404
        # here fails the preflight, and the page sees a network error, never the 404 below.
        return preflight(request, QUERY_METHODS)
    # The path under the app, as the routes matched it (the URL's holds a mount's prefix).
    path = f"/v1/{request.path_params['rest']}"
    if path.endswith("/") and path.rstrip("/") in _ENDPOINTS:
        # What Starlette's slash redirect answered before this route caught every /v1/ path
        # (307: the method and the query string are kept). A relative reference: an absolute
        # one would name whatever Host header the client sent.
        query = request.url.query
        location = request.url.path.rstrip("/") + (f"?{query}" if query else "")
        return RedirectResponse(location, 307, headers=_HEADERS)
    if path in _ENDPOINTS:
        answer = problem(
            405, "Method not allowed", f"{request.method} is not answered here; use GET"
        )
        answer.headers["Allow"] = f"{QUERY_METHODS}, OPTIONS"
        return answer
    return problem(404, "Not found", f"no such endpoint; the query API has {', '.join(_ENDPOINTS)}")


class _AnyText(Convertor[str]):
    """A path parameter that takes every character: the ``path`` convertor's ``.*`` stops
    at a line break, so ``/v1/a%0ab`` matched no route and got Starlette's plain-text 404."""

    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anytext", _AnyText())


class _EveryMethod:
    """An endpoint as a plain ASGI app: a Route given a function answers only the methods it
    lists (GET by default) and any other with Starlette's plain-text 405; an app, every
    method (TRACE and WebDAV's too)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.endpoint(Request(scope, receive))
        await response(scope, receive, send)


# OPTIONS has routes of its own, after the GET ones: a GET is matched by its first route
# and pays nothing for them; the catch-all comes last, for every method.
ROUTES = [
    *(Route(path, _answering_problems(handler), methods=["GET"])
      for path, handler in _ENDPOINTS.items()),
    *(Route(path, cors_preflight, methods=["OPTIONS"]) for path in _ENDPOINTS),
    Route("/v1/{rest:anytext}", _EveryMethod(elsewhere)),
]  # fmt: skip


def csv_response(
    stream: CsvStream, settings: Settings, headers: Mapping[str, str] = _NO_STORE
) -> Response:
    """The CSV answer. ``headers`` go before its own: the API passes its CORS headers; the
    console, which serves this too and is same-origin, keeps the default."""
    # Sent like a device download: pages read off the loop (under the query API's own thread
    # cap and share of the downloads' pool, not the downloads' cap), a disconnect noticed at
    # once, a client below the minimum rate cut, never a short file that looks complete.
    headers = {
        **headers,
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{stream.filename}"',
    }
    return ExportResponse(stream, headers, settings, query_pages=True)
