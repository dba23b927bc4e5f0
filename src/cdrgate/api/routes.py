"""The endpoint table and the dispatcher that applies the S-Series rules to every request:
POST-only (20001), unknown request (10003), CORS preflight, and errors as envelopes."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from cdrgate.api import cdr, push, recording, session
from cdrgate.api.context import ApiCall, ApiVersion, Services
from cdrgate.api.envelope import client_ip, failure, preflight
from cdrgate.errors import ApiError, Errno, StorageUnavailable
from cdrgate.logredact import redact
from cdrgate.versions import SELECTOR_FIELD

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


async def dispatch(request: Request) -> Response:
    services: Services = request.app.state.services
    version_path = request.path_params["version"]
    name = request.path_params["endpoint"].strip("/")
    if request.method == "OPTIONS":
        return preflight(request)
    endpoint = ENDPOINTS.get(name)
    if version_path not in SELECTOR_FIELD or endpoint is None:
        return failure(Errno.UNSUPPORTED_REQUEST)
    if request.method not in endpoint.methods:
        return failure(Errno.POST_ONLY)
    try:
        call = ApiCall(services, ApiVersion(version_path), client_ip(request))
        return await endpoint.handler(request, call)
    except ApiError as exc:
        return failure(exc.errno)
    except StorageUnavailable as exc:
        log.error("storage unavailable: %s", exc)
        return failure(Errno.APISRV_DOWN)
    except Exception:
        log.exception("unexpected error on %s %s", request.method, redact(str(request.url.path)))
        return failure(Errno.APISRV_DOWN)
