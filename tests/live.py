"""A real uvicorn server in a thread of the test process, serving an app built on the test's
own database (either engine), so a test can watch the pool, the audit and the locks while
real sockets misbehave."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

from cdrgate.http_protocol import LenientHttpToolsProtocol


@contextmanager
def live_server(app: ASGIApp) -> Iterator[int]:
    """Serve ``app`` on 127.0.0.1; yields the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_config=None, access_log=False, http=LenientHttpToolsProtocol, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            thread.join(0.05)
        assert server.started, "uvicorn did not start"
        yield port
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def raw_request(
    port: int,
    target: str,
    *,
    version: str = "1.1",
    rcvbuf: int | None = None,
    source: str = "127.0.0.1",
) -> socket.socket:
    """A client socket that sent ``GET target``; a small ``rcvbuf`` makes the server stall."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {target} HTTP/{version}\r\nHost: pbx.test\r\n\r\n".encode())
    return sock


def recv_at_least(sock: socket.socket, size: int, timeout: float = 30) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while len(data) < size:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def recv_all(sock: socket.socket, timeout: float = 60) -> bytes:
    return recv_at_least(sock, 1 << 62, timeout)
