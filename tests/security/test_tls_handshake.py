"""A TLS handshake that stalls is closed after the idle timeout, like a silent plain-HTTP
socket: a real ``cdrgate serve --self-signed`` on loopback, raw sockets that never finish
their handshake, and an honest HTTPS client served meanwhile."""

from __future__ import annotations

import socket
import ssl

import httpx
import pytest

from tests.conftest import Flow
from tests.servers import PASSWORD_MD5, Server, ServerFactory

# The bound the server is given, and how long a test waits for its close: well under the 60 s
# asyncio holds a handshake by default, so a server that falls back to it fails the test.
IDLE_TIMEOUT = "2"
DEADLINE_SECONDS = 25


@pytest.fixture(scope="module", params=["1", "2"], ids=["one-process", "workers-2"])
def https_server(request: pytest.FixtureRequest, module_server_factory: ServerFactory) -> Server:
    workers = request.param
    return module_server_factory(
        "--self-signed", "--idle-timeout", IDLE_TIMEOUT, "--workers", workers, scheme="https"
    )


def _connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE_SECONDS)


def _client_hello() -> bytes:
    """The first flight of a real TLS client, made in memory and never sent on by itself."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def _closed_by_server(sock: socket.socket) -> bool:
    """True once the server closes; False if it still holds the socket at the deadline."""
    try:
        while sock.recv(65536):
            pass  # a ServerHello and the rest of its flight, then the close
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def _still_held(sock: socket.socket) -> bool:
    """Whether the server still holds ``sock`` open and has sent nothing on it (a stalled
    handshake it has not given up on): seen at once, without waiting."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)  # a byte or the close: not stalled any more
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.settimeout(DEADLINE_SECONDS)


def _login(server: Server) -> str:
    with httpx.Client(base_url=server.base_url, verify=False, timeout=DEADLINE_SECONDS) as http:
        return str(Flow(http).login(password=PASSWORD_MD5)["token"])


def _downloaded(server: Server, token: str) -> bool:
    """A download on a new HTTPS connection (its own handshake)."""
    with httpx.Client(base_url=server.base_url, verify=False, timeout=DEADLINE_SECONDS) as http:
        return Flow(http).download(token).status_code == 200


def test_a_socket_that_sends_nothing_after_connect_is_closed(https_server: Server):
    with _connect(https_server) as sock:
        assert _closed_by_server(sock)


def test_half_a_client_hello_is_closed(https_server: Server):
    hello = _client_hello()
    with _connect(https_server) as sock:
        sock.sendall(hello[: len(hello) // 2])
        assert _closed_by_server(sock)


def test_a_client_that_stops_after_its_hello_is_closed(https_server: Server):
    # The server answers the hello and waits for the client's Finished, which never comes.
    with _connect(https_server) as sock:
        sock.sendall(_client_hello())
        assert _closed_by_server(sock)


# How many times the honest client is tried: it counts only where it was served before the
# idle timeout closed the stalled handshakes, which a busy machine can make it miss.
ATTEMPTS = 5


def test_honest_clients_are_served_while_handshakes_stall(https_server: Server):
    token = _login(https_server)  # before: its scrypt need not fit in the stall's window
    part = _client_hello()[:20]
    for _ in range(ATTEMPTS):
        # Several, so that with two workers both hold some.
        stalled = [_connect(https_server) for _ in range(6)]
        try:
            for sock in stalled[::2]:
                sock.sendall(part)
            assert _downloaded(https_server, token)
            if all(_still_held(sock) for sock in stalled):
                # Served while every stalled handshake was held; then those are closed.
                assert all(_closed_by_server(sock) for sock in stalled)
                return
        finally:
            for sock in stalled:
                sock.close()
    pytest.fail(
        f"never served within the {IDLE_TIMEOUT} s the stalled handshakes are held "
        f"({ATTEMPTS} tries): the machine too busy to tell"
    )
