"""A tiny forward proxy on loopback, in a thread: absolute-form requests and CONNECT tunnels.

Each connection carries one request (it is forwarded with ``Connection: close``), so every
request the client sends is seen here. ``trickle``: the answer is relayed one byte every
``trickle`` seconds, as a slow proxy that stays inside any read timeout.
"""

from __future__ import annotations

import select
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit


class ForwardProxy:
    def __init__(self, trickle: float = 0.0) -> None:
        self.trickle = trickle
        self.seen: list[str] = []  # request lines, as the client sent them

    def _handle(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = client.recv(65536)
            if not data:
                return
            head += data
        head, _, rest = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ")
        self.seen.append(f"{method} {target}")
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            with socket.create_connection((host, int(port))) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                _pipe(client, upstream)
            return
        url = urlsplit(target)
        assert url.hostname is not None and url.port is not None
        headers = [
            line for line in lines[1:]
            if line.split(":")[0].lower() not in ("connection", "proxy-authorization")
        ]  # fmt: skip
        origin = url.path + (f"?{url.query}" if url.query else "")
        forwarded = "\r\n".join([f"{method} {origin} HTTP/1.1", *headers, "Connection: close"])
        with socket.create_connection((url.hostname, url.port)) as upstream:
            upstream.sendall(forwarded.encode("latin-1") + b"\r\n\r\n" + rest)
            length = next(
                (int(line.split(":")[1]) for line in headers
                 if line.split(":")[0].lower() == "content-length"), 0,
            )  # fmt: skip
            while len(rest) < length:
                data = client.recv(65536)
                if not data:
                    return
                rest += data
                upstream.sendall(data)
            while data := upstream.recv(65536):
                if not self.trickle:
                    client.sendall(data)
                    continue
                for at in range(len(data)):
                    client.sendall(data[at : at + 1])
                    time.sleep(self.trickle)

    @contextmanager
    def running(self) -> Iterator[str]:
        """Serve on 127.0.0.1; yields the proxy's URL."""
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                try:
                    proxy._handle(self.request)
                except OSError:
                    pass  # the client gave up (a deadline): nothing to relay to

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.block_on_close = False
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Relay both ways until either side closes."""
    while True:
        readable, _, _ = select.select([a, b], [], [], 30)
        if not readable:
            return
        for sock in readable:
            data = sock.recv(65536)
            if not data:
                return
            (b if sock is a else a).sendall(data)
