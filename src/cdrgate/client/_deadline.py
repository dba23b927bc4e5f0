"""An overall deadline for each request's answer, beneath httpx's per-read timeout.

httpx's timeout bounds each read, so a far end that sends one byte just inside it keeps a
request alive for as long as it likes. Here every socket operation a request makes (connect,
TLS handshake, writing the request, reading the head and each part of the body) waits at most
until that request's deadline, so the whole answer is bounded, not just its silences.

A request's deadline is carried in a context variable set only while the transport works for
that request (sending it and reading its head) and while a part of its body is read, so a
caller that reads two answers in turn (rows of one download, a recording fetched between
them) gives each read its own request's deadline.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import httpcore
import httpx

T = TypeVar("T")


class DeadlinePassed(httpx.ReadTimeout):
    """A request's answer was not complete within its deadline (a timeout, for httpx)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the answer took longer than the {seconds:g} s deadline")
        self.seconds = seconds


class ProxyUnreachable(httpx.ConnectError):
    """The proxy a request was to go through could not be reached; ``proxy`` is its URL (with
    any password: ``_proxies.shown`` makes it fit for a message)."""

    def __init__(self, message: str, proxy: str, request: httpx.Request) -> None:
        super().__init__(message, request=request)
        self.proxy = proxy


# (monotonic time the deadline passes, its length in seconds) of the request being served.
_current: ContextVar[tuple[float, float] | None] = ContextVar("cdrgate_deadline", default=None)


@contextmanager
def _serving(deadline: tuple[float, float]) -> Iterator[None]:
    token = _current.set(deadline)
    try:
        yield
    finally:
        _current.reset(token)


def _within(operation: Callable[[float | None], T], timeout: float | None) -> T:
    """``operation(timeout)``, with the timeout cut to what is left of the deadline; a
    timeout that the deadline set is DeadlinePassed, not the per-read timeout's error."""
    deadline = _current.get()
    if deadline is None:
        return operation(timeout)
    at, seconds = deadline
    left = at - time.monotonic()
    if left <= 0:
        raise DeadlinePassed(seconds)
    if timeout is not None and timeout < left:
        return operation(timeout)
    try:
        return operation(left)
    except httpcore.TimeoutException:
        raise DeadlinePassed(seconds) from None


class ProxyTlsFailed(httpcore.ConnectError):
    """The TLS handshake with an ``https://`` proxy failed (not the PBX's, which runs inside
    the tunnel after it); ``proxy`` is its URL."""

    def __init__(self, message: str, proxy: str) -> None:
        super().__init__(message)
        self.proxy = proxy


class _Stream(httpcore.NetworkStream):
    """``inner``, every operation within the request's deadline. ``tls_proxy``: the URL of
    the ``https://`` proxy this connection goes to (None: none), whose TLS is the first one
    started on it."""

    def __init__(self, inner: httpcore.NetworkStream, tls_proxy: str | None = None) -> None:
        self._inner = inner
        self._tls_proxy = tls_proxy

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return _within(lambda left: self._inner.read(max_bytes, left), timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        _within(lambda left: self._inner.write(buffer, left), timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        proxy, self._tls_proxy = self._tls_proxy, None  # the next TLS is the PBX's
        try:
            self._inner = _within(
                lambda left: self._inner.start_tls(ssl_context, server_hostname, left), timeout
            )
        except httpcore.ConnectError as exc:
            if proxy is None:
                raise
            raise ProxyTlsFailed(str(exc), proxy) from exc
        return self

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    """httpcore's network, within each request's deadline. ``proxy``: the proxy every
    connection goes to (None: direct), so that a failed TLS handshake with an ``https://``
    one is said to be the proxy's."""

    def __init__(self, proxy: str | None = None) -> None:
        self._inner = httpcore.SyncBackend()
        self._tls_proxy = proxy if proxy is not None and proxy.startswith("https://") else None

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        return _Stream(
            _within(
                lambda left: self._inner.connect_tcp(
                    host, port, left, local_address, socket_options
                ),
                timeout,
            ),
            self._tls_proxy,
        )

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:  # pragma: no cover - the client connects over TCP only
        return _Stream(
            _within(
                lambda left: self._inner.connect_unix_socket(path, left, socket_options), timeout
            )
        )

    def sleep(self, seconds: float) -> None:  # pragma: no cover - httpcore's retries, unused
        self._inner.sleep(seconds)


class _Body(httpx.SyncByteStream):
    """An answer's body whose every read waits no later than its request's deadline."""

    def __init__(self, inner: httpx.SyncByteStream, deadline: tuple[float, float]) -> None:
        self._inner = inner
        self._deadline = deadline

    def __iter__(self) -> Iterator[bytes]:
        parts = iter(self._inner)
        while True:
            with _serving(self._deadline):
                part = next(parts, None)
            if part is None:
                return
            yield part

    def close(self) -> None:
        self._inner.close()


class DeadlineTransport(httpx.BaseTransport):
    """httpx's own HTTP transport, each of whose requests ends ``seconds`` after it was sent
    with DeadlinePassed if its answer is not complete by then (None: no deadline).

    ``proxy``: the URL of the proxy every request goes through (None: direct). The deadline
    covers the whole way: connecting to the proxy, its CONNECT tunnel, the answer through it.
    """

    def __init__(
        self, seconds: float | None, verify: ssl.SSLContext | bool, proxy: str | None = None
    ) -> None:
        self._seconds = seconds
        self._proxy = proxy
        self._inner = httpx.HTTPTransport(verify=verify, proxy=proxy)
        # httpx (0.28) takes no network backend of its own (encode/httpx#3749 would add one);
        # its pool does (a public httpcore argument), so hand the pool ours. Every pool
        # (direct, HTTP proxy, SOCKS proxy) opens its connections through _network_backend:
        # should httpcore rename it, fail here rather than quietly run without a deadline.
        pool = self._inner._pool
        if not hasattr(pool, "_network_backend"):  # pragma: no cover - an httpcore change
            raise RuntimeError(f"{type(pool).__name__} has no _network_backend to bound")
        pool._network_backend = _Backend(proxy)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return self._handle(request)
        except httpx.ConnectError as exc:
            if self._proxy is None:
                raise
            # Without this, a proxy that is down reads as a PBX that is down.
            raise ProxyUnreachable(str(exc), self._proxy, request) from exc

    def _handle(self, request: httpx.Request) -> httpx.Response:
        if self._seconds is None:
            return self._inner.handle_request(request)
        deadline = (time.monotonic() + self._seconds, self._seconds)
        with _serving(deadline):
            response = self._inner.handle_request(request)
        assert isinstance(response.stream, httpx.SyncByteStream)
        response.stream = _Body(response.stream, deadline)
        return response

    def close(self) -> None:
        self._inner.close()
