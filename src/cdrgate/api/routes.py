"""The endpoint table and the dispatcher that applies the S-Series rules to every request:
POST-only (20001), unknown request (10003), CORS preflight, and errors as envelopes."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from cdrgate.api import cdr, push, recording, session
from cdrgate.api.context import API_VERSIONS, ApiCall, Services
from cdrgate.api.envelope import CLIENT_LEFT, client_ip, failure, preflight
from cdrgate.errors import ApiError, Errno, StorageUnavailable, meaning
from cdrgate.logredact import redact

log = logging.getLogger("cdrgate.api")

Handler = Callable[[Request, ApiCall], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    handler: Handler
    methods: frozenset[str] = frozenset({"POST"})


ENDPOINTS: dict[str, Endpoint] = {
    "login": Endpoint(session.login),
    "heartbeat": Endpoint(session.heartbeat),
    "logout": Endpoint(session.logout),
    "cdr/get_random": Endpoint(cdr.get_random),
    # Download links are fetched with GET by most clients and POST by some (Guzzle, axios).
    "cdr/download": Endpoint(cdr.download, frozenset({"GET", "POST"})),
    "recording/get_random": Endpoint(recording.get_random),
    "recording/download": Endpoint(recording.download, frozenset({"GET", "POST"})),
    # cdrgate's own: NewCdr events in, authorised by an ingest key (docs/ingest.md).
    "cdr/push": Endpoint(push.push),
}


API_PREFIX = "/api/"
API_PATH = API_PREFIX + "{version}/{endpoint:path}"
# The methods the API route matches in full, and the metrics' method label set (anything else
# is "other"): a closed set, so a client cannot grow the label space.
STANDARD_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD")


class ApiRoute(Route):
    """``API_PATH`` to ``dispatch``, matched without the regex: the protocol's requests are
    most of the traffic, and Starlette's generic match (regex, convertors, two dict copies)
    cost a flow request ~4x what a miss costs. Same answer as ``Route.matches`` for every
    path: ``version`` is one non-empty segment, ``endpoint`` the rest (maybe empty). Under a
    root path, Starlette's own match (how it strips the prefix is its own business)."""

    def __init__(self, methods: list[str]) -> None:
        super().__init__(API_PATH, dispatch, methods=methods)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        if scope.get("root_path"):  # served under a prefix (mounted, a proxy's root path)
            return super().matches(scope)
        path = scope["path"]
        if not path.startswith(API_PREFIX):
            return Match.NONE, {}
        version, slash, endpoint = path[len(API_PREFIX) :].partition("/")
        if not slash or not version:
            return Match.NONE, {}
        params = scope.get("path_params")
        path_params = {**params, "version": version, "endpoint": endpoint} if params else {
            "version": version, "endpoint": endpoint,
        }  # fmt: skip
        child_scope = {"endpoint": self.endpoint, "path_params": path_params}
        assert self.methods is not None
        return (Match.FULL if scope["method"] in self.methods else Match.PARTIAL), child_scope

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``dispatch``'s answer, sent without Starlette's per-route wrapper (a closure, a
        second exception handler and a wrapped ``send`` per request): ``dispatch`` answers
        every failure itself, and what still escapes it meets the same handlers in the app's
        ``ExceptionMiddleware``, which wraps every request anyway.

        Whatever the method: one the route does not list (TRACE, CONNECT, WebDAV's) reaches
        here as a partial match, and gets the envelope (20001, or 10003 for an unknown
        endpoint) a PUT gets, not Starlette's plain-text 405 that no Yeastar client reads."""
        response = await dispatch(Request(scope, receive, send))
        await response(scope, receive, send)


async def dispatch(request: Request) -> Response:
    name = request.path_params["endpoint"].strip("/")
    if request.method == "OPTIONS":
        return preflight(request)
    try:
        response = await _call(request, name)
    except ApiError as exc:
        _log_refusal(request, name, exc)
        return failure(exc.errno)
    except ClientDisconnect:
        # Gone before its request body was whole (or timed out waiting for it): nobody to
        # answer. 499 is what the access log shows, as nginx writes for a client that left.
        if log.isEnabledFor(logging.INFO):
            log.info(
                "%s %s from %s: the client left before its request was whole",
                request.method, redact(name), client_ip(request),
            )  # fmt: skip
        return Response(status_code=CLIENT_LEFT)
    # At DEBUG: the access log's line already says it (every request, its status and client),
    # and a line costs the server ~10-30 us of a small flow's ~300-400 us a request
    # (bench/RESULTS.md, thirty-fourth round). A refusal stays at INFO (the device answers
    # it with HTTP 200, so only this log says which errno it was).
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s %s from %s: Success", request.method, redact(name), client_ip(request))
    return response


async def _call(request: Request, name: str) -> Response:
    """The endpoint's answer; every failure leaves as an ApiError so it is logged once."""
    services: Services = request.app.state.services
    version = API_VERSIONS.get(request.path_params["version"])
    endpoint = ENDPOINTS.get(name)
    if version is None or endpoint is None:
        raise ApiError(Errno.UNSUPPORTED_REQUEST, "no such version or endpoint")
    if request.method not in endpoint.methods:
        raise ApiError(Errno.POST_ONLY, f"{request.method} is not accepted here")
    try:
        call = ApiCall(services, version, client_ip(request))
        return await endpoint.handler(request, call)
    except (ApiError, ClientDisconnect):
        raise
    except StorageUnavailable as exc:
        log.error("storage unavailable: %s", exc)
        raise ApiError(Errno.APISRV_DOWN, "storage unavailable") from None
    except Exception:
        log.exception("unexpected error on %s %s", request.method, redact(str(request.url.path)))
        raise ApiError(Errno.APISRV_DOWN, "unexpected error") from None


def _log_refusal(request: Request, name: str, exc: ApiError) -> None:
    """The errno and its meaning at INFO; the rule that refused (the detail) at DEBUG.

    Details are written by cdrgate and never carry request values, so no secret can leak;
    the endpoint name comes from the path and is redacted like any other client text.
    """
    if not log.isEnabledFor(logging.INFO):
        return
    endpoint, client = redact(name), client_ip(request)
    errno = exc.errno.value
    log.info(
        "%s %s from %s: Failed errno %s (%s)",
        request.method, endpoint, client, errno, meaning(errno),
    )  # fmt: skip
    if exc.detail:
        log.debug("%s %s from %s refused: %s", request.method, endpoint, client, exc.detail)
