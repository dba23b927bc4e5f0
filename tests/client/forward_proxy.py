"""A tiny forward proxy on loopback, in a thread: absolute-form requests and CONNECT tunnels;
and a SOCKS5 one (``SocksProxy``).

Each connection carries one request (it is forwarded with ``Connection: close``), so every
request the client sends is seen here. ``trickle``: the answer is relayed one byte every
``trickle`` seconds, as a slow proxy that stays inside any read timeout.
"""

from __future__ import annotations

import select
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Iterator
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
    def running(self, tls: ssl.SSLContext | None = None) -> Iterator[str]:
        """Serve on 127.0.0.1 (over TLS with ``tls``: an ``https://`` proxy); yields the
        proxy's URL."""
        with serving(self._handle, tls) as port:
            yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"


class SocksProxy:
    """A SOCKS5 proxy (RFC 1928: no authentication, CONNECT only), as httpx speaks it with
    the socksio package. ``seen``: the (host, port) each connection asked for."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def _handle(self, client: socket.socket) -> None:
        version, methods = _exactly(client, 2)
        if version != 5 or 0 not in _exactly(client, methods):
            client.sendall(b"\x05\xff")  # no acceptable method
            return
        client.sendall(b"\x05\x00")
        version, command, _, kind = _exactly(client, 4)
        if kind == 1:
            host = socket.inet_ntop(socket.AF_INET, _exactly(client, 4))
        elif kind == 4:
            host = socket.inet_ntop(socket.AF_INET6, _exactly(client, 16))
        else:  # 3: a name, resolved here (socks5h://)
            host = _exactly(client, _exactly(client, 1)[0]).decode("ascii")
        port = int.from_bytes(_exactly(client, 2), "big")
        self.seen.append((host, port))
        if command != 1:
            client.sendall(b"\x05\x07\x00\x01" + bytes(6))  # command not supported
            return
        with socket.create_connection((host, port)) as upstream:
            client.sendall(b"\x05\x00\x00\x01" + bytes(6))  # succeeded (bound address unsaid)
            _pipe(client, upstream)

    @contextmanager
    def running(self, scheme: str = "socks5") -> Iterator[str]:
        """Serve on 127.0.0.1; yields the proxy's URL."""
        with serving(self._handle) as port:
            yield f"{scheme}://127.0.0.1:{port}"


@contextmanager
def serving(
    handle: Callable[[socket.socket], None], tls: ssl.SSLContext | None = None
) -> Iterator[int]:
    """``handle`` each connection to 127.0.0.1 in a thread of its own, after a TLS handshake
    with ``tls`` when given; yields the port."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            try:
                if tls is None:
                    handle(self.request)
                    return
                with tls.wrap_socket(self.request, server_side=True) as wrapped:
                    handle(wrapped)
            except OSError:
                pass  # the client gave up (a deadline, a refused certificate)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.block_on_close = False
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        more = sock.recv(size - len(data))
        if not more:
            raise ConnectionError("the client closed mid-handshake")
        data += more
    return data


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
            # A TLS socket may hold decrypted bytes that select does not see.
            while isinstance(sock, ssl.SSLSocket) and sock.pending():
                data += sock.recv(sock.pending())
            (b if sock is a else a).sendall(data)
