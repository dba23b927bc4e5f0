"""HTTP written byte by byte to a real server on loopback, for what a client library would not
send, or would mend: a request's bytes, sent on a connection of its own and read until the
server closes it."""

from __future__ import annotations

import socket

from cdrgate.testing.servers import Server

CLOSE = b"Connection: close\r\n"


def request(line: str, body: bytes = b"", extra: bytes = b"") -> bytes:
    """``line`` ("POST /path", "GET /path?query") as HTTP/1.1 with ``body``, its
    Content-Length, and ``extra`` header lines (each ended by CRLF)."""
    head = b"%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n" % (line.encode(), len(body))
    return head + extra + b"\r\n" + body


def post_json(path: str, body: bytes, extra: bytes = b"") -> bytes:
    """A POST of the JSON ``body``, as the API's clients send one."""
    return request(f"POST {path}", body, b"Content-Type: application/json\r\n" + extra)


def exchange(server: Server, data: bytes, timeout: float = 60) -> bytes:
    """Send ``data`` on a new connection to ``server`` and read until the server closes it
    (``timeout``: a bound on a hang, not a measure)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_to_close(sock)


def read_to_close(sock: socket.socket) -> bytes:
    """Everything the server sends on ``sock`` until it closes; the socket's timeout guards a
    hang, and a reset after the answer counts as the close."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def head_and_body(answer: bytes) -> tuple[bytes, bytes]:
    """An answer's head (status line and headers) and its body (as sent: not de-chunked)."""
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body
