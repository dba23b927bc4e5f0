"""A real ``cdrgate serve`` against clients that half-close, reset or send bodies past the
answer (the fifteenth round's probe; docs/operations.md, "Hostile clients")."""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Iterator

import pytest

from tests.servers import PASSWORD, Server, ServerFactory

LOGIN = b'{"username": "api", "password": "%s", "port": "1"}' % (
    hashlib.md5(PASSWORD.encode()).hexdigest().encode()
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    factory = ServerFactory(tmp_path_factory.mktemp("hostile"))
    yield factory("--idle-timeout", "5")
    factory.close()


def post(path: str, body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n%s\r\n%s" % (path.encode(), len(body), extra, body)
    )


def read_to_close(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; the socket's timeout guards a hang."""
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    return answer


def answer_body(answer: bytes) -> dict[str, str]:
    return json.loads(answer.partition(b"\r\n\r\n")[2])


def test_a_client_that_half_closes_after_its_request_still_gets_the_answer(server):
    # `shutdown(SHUT_WR)` after the request (nc -N, some scripts) says "no more requests",
    # not "gone": the client still reads the answer, and nginx sends it.
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(post("/api/v1.1.0/login", LOGIN))
        sock.shutdown(socket.SHUT_WR)
        answer = read_to_close(sock)
    assert answer.startswith(b"HTTP/1.1 200")
    assert answer_body(answer)["status"] == "Success"
    assert "Traceback" not in server.output()
