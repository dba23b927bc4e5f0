"""Fifty downloads from clients that misbehave at once against a real ``cdrgate serve``: it
serves an honest client meanwhile, keeps no socket of theirs afterwards, and audits each of
them once (the twenty-fifth round's probe, kept bounded)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest

from cdrgate.storage import audit
from cdrgate.storage.db import Database
from tests.raw_http import CLOSE, exchange, head_and_body, post_json
from tests.servers import PASSWORD, Server, launch, prepare_database
from tests.waiting import wait_until

CDRS = 60_000  # over 30 days: "all" is ~6 MB, more than the kernel buffers on loopback (4 MB)
HOSTILE = 50
ALL_MAY = "extid=all&starttime=2026-05-01%2000:00:00&endtime=2026-05-31%2023:59:59"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("hostile-downloads")
    url = prepare_database(directory, seed=CDRS)
    env = {
        **os.environ,
        "CDRGATE_DATABASE": url,
        # Every one of them streams: the limits' 20010 is another test's.
        "CDRGATE_EXPORT_MAX_CONCURRENT": "0",
        "CDRGATE_EXPORT_MAX_PER_ACCOUNT": "0",
    }
    served = launch(["--idle-timeout", "5"], env, directory / "serve.log", directory)
    yield served
    served.stop()


def call(server: Server, request: bytes) -> bytes:
    """The body of the answer to ``request``."""
    return head_and_body(exchange(server, request))[1]


def post(path: str, fields: dict[str, str]) -> bytes:
    return post_json(path, json.dumps(fields).encode(), CLOSE)


def download_request(
    server: Server, token: str, extid: str = "all", version: str = "HTTP/1.1"
) -> bytes:
    fields = {"extid": extid, "starttime": "2026-05-01 00:00:00", "endtime": "2026-05-31 23:59:59"}
    answer = call(server, post(f"/api/v1.1.0/cdr/get_random?token={token}", fields))
    random = json.loads(answer)["random"]
    query = ALL_MAY.replace("extid=all", f"extid={extid}")
    target = f"/api/v1.1.0/cdr/download?{query}&token={token}&random={random}"
    return f"GET {target} {version}\r\nHost: x\r\n\r\n".encode()


def client_sockets(pid: int) -> int:
    """The server's open sockets (its listener, and one per connection: SQLite holds none)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except FileNotFoundError:
            continue  # closed while listed
    return count


def audited(database_url: str) -> list[Any]:
    """Every audit record, newest first."""
    database = Database(database_url)
    try:
        with database.read() as conn:
            return audit.query(conn, limit=10_000)
    finally:
        database.dispose()


def test_fifty_hostile_downloads_leave_no_socket_and_are_each_audited_once(server):
    token = json.loads(
        call(
            server,
            post(
                "/api/v1.1.0/login",
                {"username": "api", "password": hashlib.md5(PASSWORD.encode()).hexdigest()},
            ),
        )
    )["token"]
    baseline = client_sockets(server.process.pid)
    seen = {record.id for record in audited(server.database_url)}
    kinds = ("reads nothing", "half-closes", "resets", "reads a byte at a time")
    hostile: list[tuple[str, socket.socket]] = []
    try:
        for number in range(HOSTILE):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # stalls it sooner
            sock.settimeout(30)
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(download_request(server, token))
            hostile.append((kinds[number % len(kinds)], sock))
        for kind, sock in hostile:
            if kind == "half-closes":
                sock.shutdown(socket.SHUT_WR)
            elif kind == "resets":
                sock.recv(1024)  # mid-body
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            elif kind == "reads a byte at a time":
                sock.recv(1)
        # An honest client meanwhile: its own download, whole (HTTP/1.0: not chunked).
        answer = call(server, download_request(server, token, "1001", "HTTP/1.0"))
        assert answer.startswith(b"callid,timestart,")
        assert answer.endswith(b"\n")
    finally:
        for _, sock in hostile:
            sock.close()
    wait_until(
        lambda: client_sockets(server.process.pid) == baseline,
        lambda: f"{client_sockets(server.process.pid)} sockets, {baseline} before",
        60, every=0.2,
    )  # fmt: skip

    def new_records() -> list[Any]:
        return [r for r in audited(server.database_url) if r.id not in seen]

    # The honest download and each hostile one, once, each settled (a stream's outcome is
    # written when it ends); a hostile one never ends "ok".
    wait_until(
        lambda: (
            len(records := new_records()) == HOSTILE + 1
            and all(r.outcome in ("ok", "aborted", "cut") for r in records)
        ),
        lambda: str(sorted(r.outcome for r in new_records())),
        60, every=0.2,
    )  # fmt: skip
    assert [r.outcome for r in new_records()].count("ok") == 1
    assert "Traceback" not in server.output()
