"""The S-Series response envelope, request-body parsing and the client address.

Every API answer is HTTP 200 JSON, ``{"status":"Success",...}`` or
``{"status":"Failed","errno":"NNNNN"}``, with the device's two CORS headers.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from cdrgate.errors import ApiError, Errno
from cdrgate.iprules import in_networks, normalise_ip, parse_networks

CORS_HEADERS: Mapping[str, str] = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS, PUT, DELETE",
}


def success(**fields: str) -> Response:
    return JSONResponse({"status": "Success", **fields}, headers=dict(CORS_HEADERS))


def failure(errno: Errno) -> Response:
    return JSONResponse({"status": "Failed", "errno": errno.value}, headers=dict(CORS_HEADERS))


def preflight(request: Request) -> Response:
    """Answer a browser's CORS preflight so browser-based clients can call the API."""
    headers = dict(CORS_HEADERS)
    requested = request.headers.get("access-control-request-headers")
    if requested:
        headers["Access-Control-Allow-Headers"] = requested
    headers["Access-Control-Max-Age"] = "600"
    return Response(status_code=200, headers=headers)


async def read_json_fields(request: Request, limit: int) -> dict[str, str]:
    """The body as a flat mapping of string fields, whatever the Content-Type says.

    Numbers are accepted where strings are documented (``"port": 8260``). An empty body is an
    empty object (logout has none). Anything else that is not a JSON object is 20000.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(Errno.JSON_ONLY, "body too large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(Errno.JSON_ONLY, "body too large")
    try:
        text = bytes(body).decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        raise ApiError(Errno.JSON_ONLY, "body is not UTF-8") from None
    if not text:
        return {}
    if text.startswith("<"):
        raise ApiError(Errno.XML_NOT_SUPPORTED)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise ApiError(Errno.JSON_ONLY) from None
    if not isinstance(data, dict):
        raise ApiError(Errno.JSON_ONLY)
    return {
        str(key): scalar for key, value in data.items() if (scalar := _scalar(value)) is not None
    }


def _scalar(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return str(value)
    return None


def required(fields: Mapping[str, str], name: str) -> str:
    value = fields.get(name)
    if value is None or not value.strip():
        raise ApiError(Errno.PARAMETER_EMPTY, f"{name} is required")
    return value


@dataclass(frozen=True)
class ProxyPolicy:
    """Which peers may tell us the real client address (X-Forwarded-For). None by default."""

    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, specs: tuple[str, ...]) -> ProxyPolicy:
        return cls(parse_networks(specs, "trusted proxies"))

    def trusts(self, address: str) -> bool:
        return in_networks(address, self.networks)

    def client_ip(self, request: Request) -> str:
        peer = _peer(request)
        if not self.networks or not self.trusts(peer):
            return peer
        forwarded = [p.strip() for p in request.headers.get("x-forwarded-for", "").split(",")]
        # Walk from the nearest hop; the first address not a trusted proxy is the client.
        for hop in reversed([p for p in forwarded if p]):
            try:
                hop_ip = normalise_ip(hop)
            except ValueError:
                return peer
            if not self.trusts(hop_ip):
                return hop_ip
        return peer


def _peer(request: Request) -> str:
    """The socket peer; a non-IP peer (a Unix socket, an in-process client) is kept as named."""
    host = request.client.host if request.client else ""
    try:
        return normalise_ip(host)
    except ValueError:
        return host or "unknown"


class ClientAddress:
    """ASGI middleware: work out the client's address once per request, for every rule that
    needs it (permitted networks, lockouts, random binding, audit): ``client_ip(request)``."""

    def __init__(self, app: ASGIApp, proxies: ProxyPolicy) -> None:
        self.app = app
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})[_CLIENT_IP] = self.proxies.client_ip(Request(scope))
        await self.app(scope, receive, send)


_CLIENT_IP = "cdrgate_client_ip"


def client_ip(request: Request) -> str:
    """The address ``ClientAddress`` resolved (the socket peer in an app built without it)."""
    resolved: str | None = request.scope.get("state", {}).get(_CLIENT_IP)
    return resolved if resolved is not None else _peer(request)
