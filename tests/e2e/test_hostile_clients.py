"""A real ``cdrgate serve`` against clients that half-close, reset or send bodies past the
answer (the fifteenth round's probe; docs/operations.md, "Hostile clients")."""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from tests.raw_http import CLOSE, exchange, head_and_body, post_json, read_to_close
from tests.servers import PASSWORD, Server, ServerFactory, run_cli

LOGIN = b'{"username": "api", "password": "%s", "port": "1"}' % (
    hashlib.md5(PASSWORD.encode()).hexdigest().encode()
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    factory = ServerFactory(tmp_path_factory.mktemp("hostile"))
    yield factory("--idle-timeout", "5")
    factory.close()


def answer_body(answer: bytes) -> dict[str, str]:
    return json.loads(head_and_body(answer)[1])


def test_a_client_that_half_closes_after_its_request_still_gets_the_answer(server):
    # `shutdown(SHUT_WR)` after the request (nc -N, some scripts) says "no more requests",
    # not "gone": the client still reads the answer, and nginx sends it.
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(post_json("/api/v1.1.0/login", LOGIN))
        sock.shutdown(socket.SHUT_WR)
        answer = read_to_close(sock)
    assert answer.startswith(b"HTTP/1.1 200")
    assert answer_body(answer)["status"] == "Success"
    assert "Traceback" not in server.output()


def reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a flood does to pay nothing for the answer."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_requests_whose_clients_reset_before_they_were_accepted_are_not_run(server):
    # A flood that connects, sends a request and resets fills the accept queue faster than
    # requests are answered. The server is stopped here so that every one of them is queued
    # and reset before it is accepted, as in a flood, deterministically.
    body = (
        b'{"extid": "1000", "starttime": "2026-05-02 00:00:00", "endtime": "2026-05-02 23:59:59"}'
    )
    flood = post_json("/api/v1.1.0/cdr/get_random?token=" + "0" * 32, body)
    logged_before = server.output().count("POST cdr/get_random from")
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            sock.sendall(flood)
            reset(sock)
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    # An honest request behind them is answered, and is the only get_random run.
    answer = exchange(
        server, post_json("/api/v1.1.0/cdr/get_random?token=" + "1" * 32, body, CLOSE)
    )
    assert answer_body(answer) == {"status": "Failed", "errno": "20004"}
    log = server.output()
    assert log.count("POST cdr/get_random from") - logged_before == 1
    assert "from unknown" not in log
    assert "Traceback" not in log


@pytest.mark.parametrize(
    ("framing", "connection"),
    [
        ("content-length", b""),
        ("chunked", b""),
        # Not kept alive (PHP's file_get_contents sends both): closed at once, the unread
        # body made the close a reset, and Node's http client emitted ECONNRESET after the
        # answer.
        ("content-length", CLOSE),
        ("chunked", CLOSE),
        ("http/1.0", b""),
    ],
)
def test_a_body_larger_than_the_api_accepts_gets_its_answer_then_the_close(
    server, framing, connection
):
    # Without the close, the server read the whole body after answering (100 MB, or a
    # chunked body that never ends) and kept the connection for more.
    budget = 64 * 1024 * 1024
    head = post_json("/api/v1.1.0/login", b"", connection)
    if framing == "chunked":
        head = head.replace(b"Content-Length: 0", b"Transfer-Encoding: chunked")
        block = b"10000\r\n" + b" " * 65536 + b"\r\n"
    else:
        head = head.replace(b"Content-Length: 0", b"Content-Length: %d" % (2 * budget))
        if framing == "http/1.0":
            head = head.replace(b"HTTP/1.1", b"HTTP/1.0")
        block = b" " * 65536
    answer, sent, unsent, ended = b"", 0, memoryview(block), "not"
    deadline = time.monotonic() + 60  # a server that neither reads nor answers: fail, not hang
    with socket.socket() as sock:
        # Room to send far more than the server reads before it answers (2 MiB) before
        # reading anything: bytes are still on their way to it when it has answered.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(head + block * 32)
        sent = len(block) * 32
        sock.setblocking(False)
        while sent < budget and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 1.0)
            try:
                if readable:
                    chunk = sock.recv(65536)
                    if not chunk:
                        ended = "with a FIN"  # after the answer, as nginx's lingering close
                        break
                    answer += chunk
                if writable:
                    done = sock.send(unsent)
                    sent += done
                    unsent = unsent[done:] or memoryview(block)  # whole blocks: chunks framed
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                ended = "with a reset"
                break
    assert answer_body(answer) == {"status": "Failed", "errno": "20000"}
    # The head says so: a client told nothing would send its next request on this
    # connection and find it closed.
    assert b"connection: close" in answer.split(b"\r\n\r\n", 1)[0].lower().split(b"\r\n")
    assert ended == "with a FIN"
    assert sent < budget
    assert "Traceback" not in server.output()


def test_a_request_line_ended_by_a_bare_lf_is_refused_at_once_not_held(server):
    # Hand-written clients (printf | nc) end lines with "\n" alone; the parser refuses that,
    # and the refusal must come now, not after the head timeout's silent close.
    answer = exchange(server, b"GET /api/v1.1.0/heartbeat HTTP/1.1\nHost: x\n\n")
    assert answer.startswith(b"HTTP/1.1 400")


@pytest.mark.parametrize(
    "coding",
    [
        b"Transfer-Encoding: gzip, chunked\r\n",
        b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
    ],
)
def test_a_body_in_a_transfer_coding_the_server_cannot_undo_gets_501(server, coding):
    # The parser reads "gzip, chunked" as plain chunked: without the check a gzipped login
    # (here not even gzipped) was handed to the API and answered as if it were JSON.
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(LOGIN), LOGIN)
    head = b"POST /api/v1.1.0/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    answer = exchange(server, head + coding + b"\r\n" + chunked)
    assert answer.startswith(b"HTTP/1.1 501 ")
    assert b"token" not in answer
    assert "Traceback" not in server.output()


def test_the_501_comes_after_the_answers_of_requests_pipelined_before_it(server):
    login = post_json("/api/v1.1.0/login", LOGIN)
    bad = (
        b"POST /api/v1.1.0/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n"
        b"\r\n0\r\n\r\n"
    )
    answer = exchange(server, login + bad)
    first, _, rest = answer.partition(b"HTTP/1.1 501 ")
    assert first.startswith(b"HTTP/1.1 200") and b'"Success"' in first
    assert rest.endswith(b"Unsupported transfer coding.")


def test_a_chunked_body_is_still_read(server):
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(LOGIN), LOGIN)
    request = (
        b"POST /api/v1.1.0/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunked
    )
    answer = exchange(server, request)
    assert answer.startswith(b"HTTP/1.1 200")
    assert answer_body(answer)["status"] == "Success"


def test_a_push_holding_a_lone_surrogate_escape_is_refused_for_good_not_retried(server):
    # A sender re-sends a push until it hears 200 (docs/ingest.md). JSON can spell a string
    # no store can encode ("\ud800"): its commit failed and the 503 asked for it again, for
    # ever. Refused for good now, as an API body holding one is.
    key = run_cli("ingest-key", "add", "surrogates", env=server.env).split()[-1]
    assert key.startswith("cdrk_")
    event = (
        b'{"event": "NewCdr", "callid": "1.1", "timestart": "2026-05-02 10:00:00", '
        b'"callfrom": "\\ud800", "callto": "1000", "callduraction": "1", '
        b'"talkduraction": "0", "status": "ANSWERED", "type": "Internal"}'
    )
    auth = b"Authorization: Bearer %s\r\nConnection: close\r\n" % key.encode()
    answer = exchange(server, post_json("/api/v2.0.0/cdr/push", event, auth))
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer_body(answer) == {
        "status": "Failed", "errno": "20000", "reason": "body holds an unpaired surrogate escape",
    }  # fmt: skip
    assert "Traceback" not in server.output()
