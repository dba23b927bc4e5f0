"""Transports and servers for client tests: the app in process, or a real server on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn


def endpoint_of(request: httpx.Request) -> str:
    """``login``, ``cdr/get_random``, ... from a request URL."""
    return request.url.path.split("/", 3)[3]


class Recorder(httpx.BaseTransport):
    """Passes requests through, remembering each endpoint; ``after`` may act on a response."""

    def __init__(
        self,
        inner: httpx.BaseTransport,
        after: Callable[[httpx.Request, httpx.Response], httpx.Response | None] | None = None,
    ) -> None:
        self.inner = inner
        self.after = after
        self.calls: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(endpoint_of(request))
        response = self.inner.handle_request(request)
        if self.after is not None:
            replaced = self.after(request, response)
            if replaced is not None:
                return replaced
        return response


def no_feed(request: httpx.Request, response: httpx.Response) -> httpx.Response | None:
    """What a real S-Series PBX answers for the feed's path: no such page."""
    if request.url.path.startswith("/v1/"):
        return httpx.Response(404, text="<html>Not Found</html>", request=request)
    return None


class CutStream(httpx.SyncByteStream):
    """A body that stops after ``limit`` bytes with the error a dropped connection raises."""

    def __init__(self, inner: Any, limit: int) -> None:
        self.inner = inner
        self.limit = limit

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        for chunk in self.inner:
            if sent + len(chunk) >= self.limit:
                yield chunk[: self.limit - sent]
                raise httpx.ReadError("connection reset by peer")
            sent += len(chunk)
            yield chunk
        raise httpx.ReadError("connection reset by peer")

    def close(self) -> None:
        self.inner.close()


def cut_download(number: int, limit: int) -> Callable[[httpx.Request, httpx.Response], Any]:
    """An ``after`` hook that breaks the ``number``-th download's body after ``limit`` bytes."""
    seen = 0

    def after(request: httpx.Request, response: httpx.Response) -> httpx.Response | None:
        nonlocal seen
        if endpoint_of(request) != "cdr/download":
            return None
        seen += 1
        if seen != number:
            return None
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=CutStream(response.stream, limit),
            request=request,
        )

    return after


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def live_server(app: Any, **ssl: Any) -> Iterator[int]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in a thread; yields the port."""
    sock = free_socket()
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", ws="none", **ssl)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):  # bounded: 10 s at most
            if server.started or not thread.is_alive():
                break
            time.sleep(0.02)
        assert server.started, "uvicorn did not start"
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
