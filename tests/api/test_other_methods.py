"""Methods no endpoint takes (TRACE, CONNECT, WebDAV's) under /api/ get the envelope every
other refusal gets, over real sockets; a CONNECT to ``host:port`` is answered and closed."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from cdrgate.app import create_app
from cdrgate.settings import Settings
from cdrgate.storage.db import Database
from tests.live import live_server, recv_all

CORS = {
    "access-control-allow-origin": "*",
    "access-control-allow-methods": "GET, POST, OPTIONS, PUT, DELETE",
}


@pytest.fixture
def port(db: Database, clock) -> Iterator[int]:
    app = create_app(Settings(database=db.url, access_log=False), database=db, clock=clock)
    with live_server(app) as port:
        yield port


def exchange(port: int, head: str) -> bytes:
    """What the server sends for one request, ``Connection: close``, till it closes."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head.encode() + b"Connection: close\r\n\r\n")
        return recv_all(sock, timeout=30)


def envelope(answer: bytes) -> tuple[int, dict[str, str], dict[str, str]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, json.loads(body)


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND", "MKCOL"])
@pytest.mark.parametrize("endpoint", ["login", "cdr/download"])
def test_a_method_no_endpoint_takes_is_20001_with_the_cors_headers(port, method, endpoint):
    answer = exchange(port, f"{method} /api/v1.1.0/{endpoint} HTTP/1.1\r\nHost: pbx.test\r\n")
    status, headers, body = envelope(answer)
    assert (status, body) == (200, {"status": "Failed", "errno": "20001"})
    assert {name: headers[name] for name in CORS} == CORS


def test_an_unknown_endpoint_is_10003_whatever_the_method(port):
    answer = exchange(port, "TRACE /api/v1.1.0/nothing HTTP/1.1\r\nHost: pbx.test\r\n")
    assert envelope(answer)[::2] == (200, {"status": "Failed", "errno": "10003"})


def test_a_connect_to_host_and_port_is_refused_and_the_server_serves_on(port):
    target = f"127.0.0.1:{port}"
    answer = exchange(port, f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    answer = exchange(port, "POST /api/v1.1.0/nothing HTTP/1.1\r\nHost: pbx.test\r\n")
    assert envelope(answer)[::2] == (200, {"status": "Failed", "errno": "10003"})
