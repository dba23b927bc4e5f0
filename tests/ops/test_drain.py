"""SIGTERM with a large export in flight, against a real ``cdrgate serve`` process."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import time
from contextlib import closing

import httpx
import pytest

from tests.servers import PASSWORD_MD5, launch, prepare_database

pytestmark = pytest.mark.e2e

# About 12 MB of CSV: far more than the socket buffers hold, so the export is still running
# when SIGTERM arrives.
ROWS = 100_000


@pytest.fixture(scope="module")
def big_database(tmp_path_factory) -> str:
    return prepare_database(tmp_path_factory.mktemp("drain"), seed=ROWS)


def start(tmp_path, database_url: str, *args: str):
    env = {**os.environ, "CDRGATE_DATABASE": database_url}
    return launch(args, env, tmp_path / "serve.log", tmp_path)


def open_download(server) -> socket.socket:
    """A download whose client has read nothing yet (a small window keeps the server waiting)."""
    with httpx.Client(base_url=server.base_url) as http:
        token = http.post(
            "/api/v1.1.0/login", json={"username": "api", "password": PASSWORD_MD5}
        ).json()["token"]
        body = {
            "extid": "all",
            "starttime": "2026-05-01 00:00:00",
            "endtime": "2026-05-31 23:59:59",
        }
        random = http.post(f"/api/v1.1.0/cdr/get_random?token={token}", json=body).json()["random"]
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    target = (
        "/api/v1.1.0/cdr/download?extid=all&starttime=2026-05-01%2000:00:00"
        f"&endtime=2026-05-31%2023:59:59&token={token}&random={random}"
    )
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert sock.recv(1024).startswith(b"HTTP/1.1 200")
    return sock


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def refuses_connections(port: int) -> bool:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return True
        time.sleep(0.1)
    return False


def audit_outcomes(database_url: str) -> list[tuple[str, int]]:
    with closing(sqlite3.connect(database_url.removeprefix("sqlite:///"))) as conn:
        rows = conn.execute("SELECT outcome, bytes FROM download_audit ORDER BY id").fetchall()
    return [(str(outcome), int(size)) for outcome, size in rows]


def test_sigterm_lets_a_running_download_finish_then_exits_0(tmp_path, big_database):
    server = start(tmp_path, big_database)
    sock = open_download(server)
    server.process.send_signal(signal.SIGTERM)
    assert refuses_connections(server.port), "still accepting after SIGTERM"
    body = read_all(sock)
    sock.close()
    assert server.process.wait(timeout=60) == 0, server.output()
    assert body.endswith(b"0\r\n\r\n"), "the chunked body was cut"
    assert body.count(b"\n") > ROWS  # every row arrived
    assert audit_outcomes(big_database)[-1][0] == "ok"


def test_a_download_still_running_at_the_drain_deadline_is_cut_and_audited(tmp_path, big_database):
    server = start(tmp_path, big_database, "--drain-seconds", "1")
    sock = open_download(server)
    before = len(audit_outcomes(big_database))
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=60) == 0, server.output()
    sock.close()
    outcomes = audit_outcomes(big_database)[before:]
    assert len(outcomes) == 1, server.output()
    outcome, sent = outcomes[0]
    assert outcome == "cut" and 0 < sent  # ended by the server, and said so
    # A cut at the deadline is the drain doing what it says, not a crash: it was an ERROR
    # "Exception in ASGI application" with a CancelledError traceback per cut request.
    log = server.output()
    assert "Traceback" not in log and " ERROR " not in log, log
    assert "1 request(s) still running at the drain deadline are cut" in log, log


def test_sighup_to_one_worker_is_logged_and_ignored_and_the_download_goes_on(
    tmp_path, big_database
):
    # SIGHUP is what logrotate's usual postrotate and a closed terminal send. It ended a
    # one-worker serve at once: no drain, and the running download had no audit record.
    server = start(tmp_path, big_database)
    sock = open_download(server)
    before = len(audit_outcomes(big_database))
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while "SIGHUP ignored" not in server.output() and server.process.poll() is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert "SIGHUP ignored" in server.output(), server.output()
    body = read_all(sock)
    sock.close()
    assert body.endswith(b"0\r\n\r\n"), "the chunked body was cut"
    assert httpx.get(f"{server.base_url}/healthz").status_code == 200
    server.stop()
    assert [outcome for outcome, _ in audit_outcomes(big_database)[before:]] == ["ok"]
