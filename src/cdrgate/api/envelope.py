"""The S-Series response envelope, request-body parsing, the client address, and CORS.

Every API answer is HTTP 200 JSON, ``{"status":"Success",...}`` or
``{"status":"Failed","errno":"NNNNN"}``, with the device's two CORS headers. The query API
(``/v1/``) has CORS headers of its own, defined here beside the device's.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus

from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from cdrgate.errors import ApiError, Errno
from cdrgate.iprules import hop_ip, in_networks, normalise_ip, parse_networks

# Any origin may read the APIs' answers: a token travels as a query parameter or a Bearer
# header, never as a cookie, so a page on another origin reads only what it holds a token
# for; "*" lends it no visitor's session. (The console, whose session is a cookie, gets none.)
_ANY_ORIGIN: Mapping[str, str] = {"Access-Control-Allow-Origin": "*"}
DEVICE_METHODS = "GET, POST, OPTIONS, PUT, DELETE"
CORS_HEADERS: Mapping[str, str] = {**_ANY_ORIGIN, "Access-Control-Allow-Methods": DEVICE_METHODS}
# The query API's methods (a GET route answers HEAD too), and what every one of its answers
# carries: beside the origin, the headers it sends that a script may not read unless told
# (Content-Type, Content-Length and Cache-Control it may): the CSV's file name, the busy
# answer's Retry-After, the 401's WWW-Authenticate.
QUERY_METHODS = "GET, HEAD"
QUERY_CORS_HEADERS: Mapping[str, str] = {
    **_ANY_ORIGIN,
    "Access-Control-Expose-Headers": "Content-Disposition, Retry-After, WWW-Authenticate",
}
# On every answer that may hold a secret or call records (login's token, get_random's random,
# a CSV, a query result): no cache, shared or the browser's, keeps a copy, and no browser reads
# it as another type than it says (JSON or CSV taken for HTML).
PRIVATE_HEADERS: Mapping[str, str] = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
# How long a browser may reuse a preflight's answer (Chromium caps it at 2 hours).
PREFLIGHT_MAX_AGE_S = 600


# The status the access log and metrics record for a request whose client left before its
# body was whole (nginx's "client closed request"); no client ever reads it.
CLIENT_LEFT = 499


def encoded_headers(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    """``headers`` as ASGI raw headers, encoded as Starlette encodes them: for answers built
    once and sent many times."""
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
    ]


_CORS_RAW = encoded_headers(CORS_HEADERS)
_PRIVATE_RAW = encoded_headers(PRIVATE_HEADERS)

# The scope key where an envelope notes, as it is sent, the errno it carries ("" for a
# success): the metrics middleware (httpmetrics.py) counts the errno from there instead of
# parsing the JSON it was just made from.
ERRNO_NOTE = "cdrgate.errno"


class _Answer(Response):
    """A JSON answer built directly: what Starlette's JSONResponse with the CORS headers sent
    (the same bytes, the same headers in the same order), without its per-answer header
    processing, most of its cost, paid by every answer of a small flow. It sends itself, so it
    leans on no part of Starlette's Response but the attributes middleware reads. Then the
    ``PRIVATE_HEADERS``, which JSONResponse's answers lacked."""

    def __init__(self, body: bytes, errno: str) -> None:
        self.status_code = 200
        self.background: BackgroundTask | None = None
        self.body = body
        self.errno = errno
        self.raw_headers = [
            *_CORS_RAW,
            (b"content-length", str(len(body)).encode()),
            (b"content-type", b"application/json"),
            *_PRIVATE_RAW,
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[ERRNO_NOTE] = self.errno
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body})


def _answer(content: Mapping[str, str], errno: str = "") -> Response:
    return _Answer(_json_object(content).encode(), errno)


def _json_object(content: Mapping[str, str]) -> str:
    """``json.dumps(content, ensure_ascii=False, separators=(",", ":"))`` of an envelope (a flat
    object of strings: the same text), each string escaped by json's own C function. json.dumps
    with options builds a new encoder, and its C half, on every call: most of the cost of a
    small answer such as get_random's."""
    fields = ",".join(f"{_quoted(name)}:{_quoted(value)}" for name, value in content.items())
    return "{" + fields + "}"


_quoted: Callable[[str], str] = json.encoder.encode_basestring
# A request body is parsed by ``raw_decode`` on its stripped text: ``json.loads`` of a str
# is ``raw_decode`` plus two whitespace regex matches around it (a stripped text has none)
# and its type checks, -5.9k instructions a get_random (bench/RESULTS.md, sixteenth round).
_DECODER = json.JSONDecoder()


def success(**fields: str) -> Response:
    return _answer({"status": "Success", **fields})


def failure(errno: Errno) -> Response:
    return _answer({"status": "Failed", "errno": errno.value}, errno.value)


def preflight(request: Request, methods: str = DEVICE_METHODS) -> Response:
    """Answer a browser's CORS preflight so browser-based clients can call the API: the
    ``methods`` allowed, and every header the page asked to send (``Authorization`` among
    them, which a wildcard would not cover). 200, as the device answers it."""
    headers = {**_ANY_ORIGIN, "Access-Control-Allow-Methods": methods}
    requested = request.headers.get("access-control-request-headers")
    if requested:
        headers["Access-Control-Allow-Headers"] = requested
    headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_S)
    return Response(status_code=200, headers=headers)


async def read_json_fields(request: Request, limit: int) -> dict[str, str]:
    """The body as a flat mapping of string fields, whatever the Content-Type says.

    Numbers are accepted where strings are documented (``"port": 8260``). An empty body is an
    empty object (logout has none). Anything else that is not a JSON object is 20000.
    """
    for name, value in request.scope["headers"]:
        if name == b"content-length":
            if value.isdigit() and int(value) > limit:
                raise ApiError(Errno.JSON_ONLY, "body too large")
            break
    body = await _read_body(request, limit)
    try:
        text = body.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        raise ApiError(Errno.JSON_ONLY, "body is not UTF-8") from None
    if not text:
        return {}
    if text.startswith("<"):
        raise ApiError(Errno.XML_NOT_SUPPORTED)
    try:
        data, end = _DECODER.raw_decode(text)
    except (ValueError, RecursionError):
        raise ApiError(Errno.JSON_ONLY) from None
    if end != len(text) or not isinstance(data, dict):  # more after the value: json.loads's
        # "Extra data" (the text is stripped, so no trailing whitespace is left to allow)
        raise ApiError(Errno.JSON_ONLY)
    # UTF-8 text holds no surrogate, but a JSON escape can make one (``"\\ud800"``): such a
    # string cannot be encoded again (for the database, the log, the echo), as if the body
    # were not UTF-8. Nor can a NUL (``"\\u0000"``) be stored: PostgreSQL text refuses it,
    # and the login, heartbeat or download that carried it failed as a database error
    # (30003, logged as unexpected). JSON refuses both raw, so only an escape makes one.
    if "\\u" in text and not _storable(data):
        raise ApiError(Errno.JSON_ONLY, "body holds a NUL or an unpaired surrogate escape")
    if all(type(value) is str for value in data.values()):
        return data  # what every client sends: JSON keys are strings already
    fields = {key: scalar for key, value in data.items() if (scalar := _scalar(value)) is not None}
    for key in _REFUSED_WHEN_NOT_SCALAR.intersection(data):
        if key not in fields and data[key] is not None:
            # Dropped, the field would read as absent, which means something else (no
            # allowedip: only get_random's caller). Its JSON text is refused where it is parsed.
            fields[key] = json.dumps(data[key])
    return fields


def _storable(data: dict[str, Any]) -> bool:
    """Whether every key and string value of the body's object is Unicode without a NUL."""
    for text in (*data, *(value for value in data.values() if isinstance(value, str))):
        if "\x00" in text:
            return False
        try:
            text.encode()
        except UnicodeEncodeError:
            return False
    return True


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, read from the ASGI receive channel itself (as ``Request.stream``
    does, without its async generator): at most ``limit`` bytes, else 20000."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        if message["type"] != "http.request":
            continue
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiError(Errno.JSON_ONLY, "body too large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def query_fields(request: Request) -> dict[str, str]:
    """The query string's fields, decoded as Starlette's ``request.query_params`` decodes
    them (``+`` and ``%XX`` as UTF-8, blank values kept, the last of a repeated name wins),
    at a fraction of its cost: a value without ``%`` or ``+`` is taken as it is."""
    fields: dict[str, str] = {}
    for pair in request.scope["query_string"].decode("latin-1").split("&"):
        if pair:
            name, _, value = pair.partition("=")
            fields[_unquote(name)] = _unquote(value)
    return fields


def _unquote(text: str) -> str:
    if "%" in text or "+" in text:
        return _unquote_short(text) if len(text) <= SHORT_ENCODED else unquote_plus(text)
    return text


# A download link's times come %-encoded (``2026-05-01+00%3A00%3A00``, 23 characters), and a
# poller sends the same ones again and again; urllib's unquote cost a small download ~2 us a
# value. Only short values are kept, so the cache holds at most ~1,024 x 64 characters
# whatever a client sends.
SHORT_ENCODED = 64


@lru_cache(maxsize=1024)
def _unquote_short(text: str) -> str:
    return unquote_plus(text)


# Fields whose absence has a meaning of its own: a value that is not a string or number (an
# array, an object, true/false) is not taken for absent but kept as its JSON text, so the
# field's own check refuses it (``allowedip``: 20015, as the README documents).
_REFUSED_WHEN_NOT_SCALAR = frozenset({"allowedip"})


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
        # Every X-Forwarded-For line, in order, as one list (RFC 9110): a proxy that adds a
        # line of its own (HAProxy's "option forwardfor") leaves the client's before it.
        lines = ",".join(request.headers.getlist("x-forwarded-for"))
        forwarded = [p.strip() for p in lines.split(",")]
        # Walk from the nearest hop; the first address not a trusted proxy is the client.
        for hop in reversed([p for p in forwarded if p]):
            try:
                address = hop_ip(hop)
            except ValueError:
                return peer
            if not self.trusts(address):
                return address
        return peer

    def forwarded_scheme(self, request: Request) -> str | None:
        """The scheme a trusted proxy says the client spoke (X-Forwarded-Proto: its TLS ends
        there, deploy/nginx-cdrgate.conf); None when no trusted proxy says one."""
        if self.networks and self.trusts(_peer(request)):
            # The nearest hop's word, as for X-Forwarded-For.
            said = request.headers.get("x-forwarded-proto", "").split(",")[-1].strip().lower()
            if said in ("http", "https"):
                return said
        return None


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
            request = Request(scope)
            state = scope.setdefault("state", {})
            state[_CLIENT_IP] = self.proxies.client_ip(request)
            # Noted only when a proxy says it: every request would otherwise pay for its URL,
            # which only the console's cookie asks.
            if (forwarded := self.proxies.forwarded_scheme(request)) is not None:
                state[_CLIENT_SCHEME] = forwarded
        await self.app(scope, receive, send)


_CLIENT_IP = "cdrgate_client_ip"
_CLIENT_SCHEME = "cdrgate_client_scheme"


def resolved_client(scope: Scope) -> str | None:
    """The address ``ClientAddress`` resolved for this request; None before it ran."""
    resolved: str | None = scope.get("state", {}).get(_CLIENT_IP)
    return resolved


def client_ip(request: Request) -> str:
    """The address ``ClientAddress`` resolved (the socket peer in an app built without it)."""
    resolved = resolved_client(request.scope)
    return resolved if resolved is not None else _peer(request)


def client_scheme(request: Request) -> str:
    """The scheme the client spoke: a trusted proxy's X-Forwarded-Proto as ``ClientAddress``
    noted it, else the request's own."""
    forwarded: str | None = request.scope.get("state", {}).get(_CLIENT_SCHEME)
    return forwarded if forwarded is not None else request.url.scheme
