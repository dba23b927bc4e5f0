"""A real ``cdrgate serve`` at the socket edge: silent connections, the connection cap, a
taken port, https:// against plain HTTP, and a quiet start."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from cdrgate.client import CdrClient, TlsError
from tests.servers import CLI, PASSWORD, Server, ServerFactory


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    factory = ServerFactory(tmp_path_factory.mktemp("edge"))
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def edge_server(servers: ServerFactory) -> Server:
    return servers("--idle-timeout", "1")


@pytest.fixture(scope="module")
def capped_server(servers: ServerFactory) -> Server:
    # Held connections must outlive the test, so the idle timeout is long here.
    return servers("--idle-timeout", "120", "--max-connections", "4")


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server closes; the 30 s socket timeout only guards against a hang."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def request(sock: socket.socket) -> bytes:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    return sock.recv(65536)


def test_a_socket_that_sends_nothing_is_closed(edge_server):
    with connect(edge_server) as sock:
        assert closed_by_server(sock)


def test_a_request_head_that_never_completes_is_closed(edge_server):
    with connect(edge_server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        assert closed_by_server(sock)


def test_a_body_shorter_than_its_content_length_is_closed_without_a_traceback(edge_server):
    body = b'{"username": "api", "password": "x"}'
    with connect(edge_server) as sock:
        sock.sendall(
            b"POST /api/v1.1.0/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 500\r\n\r\n" + body
        )
        assert closed_by_server(sock)
    # The handler waiting for the rest of the body heard a disconnect, not an error.
    assert "Traceback" not in edge_server.output()
    with connect(edge_server) as sock:
        assert request(sock).startswith(b"HTTP/1.1 200")


def test_a_console_sign_in_form_that_never_completes_is_closed_without_a_traceback(edge_server):
    with connect(edge_server) as sock:
        sock.sendall(
            b"POST /ui/login HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 400\r\n\r\n"
            b"username=api&password="
        )
        assert closed_by_server(sock)
    assert "Traceback" not in edge_server.output()


def test_a_body_that_keeps_arriving_is_read_whole_past_the_idle_timeout(edge_server):
    # The timeout runs between two parts of a body (as nginx's client_body_timeout), not over
    # the whole body: three parts half a second apart outlast the 1 s idle timeout together.
    body = b'{"username": "api", "password": "0123456789abcdef0123456789abcdef"}'
    head = (
        b"POST /api/v1.1.0/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    with connect(edge_server) as sock:
        sock.sendall(head)
        for part in (body[:20], body[20:40], body[40:]):
            time.sleep(0.5)
            sock.sendall(part)
        answer = b""
        while b"}" not in answer and (chunk := sock.recv(65536)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200") and b'"status":"Failed"' in answer


def test_a_body_dribbled_a_byte_at_a_time_is_closed_before_it_is_whole(edge_server):
    # Each byte comes well within the 1 s idle timeout, so only the body's deadline (three
    # timeouts plus a second per KiB) ends it: long before the 200 bytes that would take 80 s.
    sent = 0
    with connect(edge_server) as sock:
        sock.sendall(
            b"POST /api/v1.1.0/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 200\r\n\r\n"
        )
        sock.settimeout(0.4)
        while sent < 200:
            try:
                if sock.recv(65536) == b"":
                    break  # closed by the server
            except TimeoutError:
                pass
            except ConnectionResetError:
                break
            try:
                sock.sendall(b" ")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 1
    assert sent < 200
    assert "Traceback" not in edge_server.output()


def test_a_kept_alive_connection_that_falls_silent_is_closed(edge_server):
    with connect(edge_server) as sock:
        assert request(sock).startswith(b"HTTP/1.1 200")
        assert closed_by_server(sock)


def test_past_the_connection_cap_a_client_gets_503_and_later_clients_are_served(capped_server):
    held = [connect(capped_server) for _ in range(3)]
    try:
        with connect(capped_server) as sock:
            assert request(sock).startswith(b"HTTP/1.1 503")
    finally:
        for sock in held:
            sock.close()
    # The server notices the closed sockets asynchronously: ask again until it has.
    for _ in range(100):
        with connect(capped_server) as sock:
            if request(sock).startswith(b"HTTP/1.1 200"):
                return
        time.sleep(0.1)
    pytest.fail("the server did not serve again after the held connections closed")


def test_https_against_the_plain_http_server_is_said_at_once(edge_server):
    url = f"https://127.0.0.1:{edge_server.port}"
    with CdrClient(url, "api", PASSWORD, verify=False, timeout=60) as pbx:
        with pytest.raises(TlsError, match="answered in plain HTTP, not HTTPS: use http://"):
            pbx.login()


def test_serve_on_a_taken_port_is_one_line_and_its_own_exit_code(edge_server, tmp_path):
    database = tmp_path / "never.db"
    env = {**os.environ, "CDRGATE_DATABASE": f"sqlite:///{database}"}
    done = subprocess.run(
        [*CLI, "serve", "--port", str(edge_server.port)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 4
    assert done.stderr.strip().splitlines() == [
        f"error: port {edge_server.port} on 127.0.0.1 is in use: "
        "choose another with --port or CDRGATE_PORT"
    ]
    assert not database.exists()


def test_a_start_logs_no_alembic_chatter(edge_server):
    assert "alembic" not in edge_server.output()
    assert "Application startup complete" in edge_server.output()
