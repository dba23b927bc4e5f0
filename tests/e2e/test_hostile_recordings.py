"""Recordings, the query API's CSV and the console's player against a real ``cdrgate serve``
when the folder or the client misbehaves: a file that shrinks while it is sent, a FIFO under
a recording's name, HEAD requests, If-Range, and the in-progress gauge (the audit after the
CDR API's hostile-client round, extended to the routes it did not cover)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from cdrgate.storage import audit
from cdrgate.storage.db import Database
from tests.raw_http import CLOSE, exchange, head_and_body, read_to_close
from tests.servers import PASSWORD_MD5, Server, launch, prepare_database
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

SIZE = 24 * 1024 * 1024  # far more than loopback's socket buffers hold


@dataclass
class Served:
    server: Server
    folder: Path
    names: list[str]  # recording names stored CDRs carry; names[0] is a SIZE-byte file

    def path(self, name: str) -> Path:
        return self.folder / name

    def token(self) -> str:
        body = {"username": "api", "password": PASSWORD_MD5, "port": "8260"}
        answer = httpx.post(self.server.base_url + "/api/v1.1.0/login", json=body).json()
        return str(answer["token"])

    def get_random(self, token: str, name: str) -> dict[str, str]:
        url = f"{self.server.base_url}/api/v1.1.0/recording/get_random?token={token}"
        answer: dict[str, str] = httpx.post(url, json={"recording": name}, timeout=10).json()
        return answer

    def download(self, name: str, extra: bytes = b"") -> bytes:
        """A download request's bytes (a fresh random), with ``extra`` header lines."""
        token = self.token()
        random = self.get_random(token, name)["random"]
        target = f"/api/v1.1.0/recording/download?recording={quote(name, safe='')}"
        return (
            f"GET {target}&token={token}&random={random} HTTP/1.1\r\nHost: x\r\n".encode()
            + CLOSE
            + extra
            + b"\r\n"
        )

    def gauge(self) -> float:
        text = httpx.get(self.server.base_url + "/metrics").text
        for line in text.splitlines():
            if line.startswith("cdrgate_exports_in_progress "):
                return float(line.split()[1])
        raise AssertionError("no cdrgate_exports_in_progress sample")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("hostile-recordings")
    url = prepare_database(directory)
    db = Database(url)
    with db.read() as conn:
        names = list(
            conn.exec_driver_sql(
                "SELECT DISTINCT recording FROM cdr WHERE recording != '' ORDER BY recording"
                " LIMIT 4"
            ).scalars()
        )
    db.dispose()
    folder = directory / "recordings"
    folder.mkdir()
    with open(folder / names[0], "wb") as big:
        big.truncate(SIZE)  # sparse: costs no disk
    for name in names[1:]:
        (folder / name).write_bytes(b"RIFF" + b"\x01" * 4000)
    env = {**os.environ, "CDRGATE_DATABASE": url}
    server = launch(("--recordings", str(folder)), env, directory / "serve.log", directory)
    try:
        yield Served(server, folder, names)
    finally:
        server.stop()


def test_a_fifo_under_a_recordings_name_is_20014_not_a_hang(served):
    name = served.names[1]
    served.path(name).unlink()
    os.mkfifo(served.path(name))
    try:
        token = served.token()
        started = time.monotonic()
        # Before: opening the FIFO waited for a writer for ever, in a worker thread per request.
        assert served.get_random(token, name) == {"status": "Failed", "errno": "20014"}
        player = httpx.get(
            f"{served.server.base_url}/ui/recording",
            params={"name": name},
            cookies={"cdrgate_session": token},
            timeout=10,
        )
        assert player.status_code == 404
        assert time.monotonic() - started < 10
    finally:
        served.path(name).unlink()
        served.path(name).write_bytes(b"RIFF" + b"\x01" * 4000)


def _last_audit(db: Database) -> Any:
    with db.read() as conn:
        return audit.query(conn, limit=1)[0]


def test_a_file_that_shrinks_while_sent_is_broken_off_without_a_traceback(served):
    name = served.names[0]
    with socket.create_connection(("127.0.0.1", served.server.port), timeout=30) as sock:
        sock.sendall(served.download(name))
        first = sock.recv(4096)
        assert first.startswith(b"HTTP/1.1 200"), first
        os.truncate(served.path(name), 1_000_000)
        try:
            answer = first + read_to_close(sock)
        finally:
            with open(served.path(name), "r+b") as back:
                back.truncate(SIZE)
    head, body = head_and_body(answer)
    assert f"content-length: {SIZE}".encode() in head.lower()
    assert len(body) < SIZE  # cut short: never a short file that looks whole
    log = served.server.output()
    # Before: the last empty chunk ended the body, and uvicorn refused it ("Response content
    # shorter than Content-Length"), a traceback in the log and the attempt audited "aborted".
    assert "Traceback" not in log and "shorter than Content-Length" not in log
    assert "download broken off" in log and "the file shrank" in log
    db = Database(served.server.database_url)
    try:
        wait_until(lambda: _last_audit(db).outcome == "failed", "the attempt audited failed")
    finally:
        db.dispose()


def test_head_reads_no_body_and_audits_none_sent(served):
    name = served.names[0]
    token = served.token()
    cookie = f"Cookie: cdrgate_session={token}\r\n".encode()
    requests = {
        f"/ui/recording?name={quote(name, safe='')}": b"content-length: %d" % SIZE,
        f"/v1/cdrs?format=csv&token={token}": b"content-type: text/csv",
        "/ui/cdrs.csv": b"content-type: text/csv",
    }
    for target, expected in requests.items():
        for version in ("HTTP/1.1", "HTTP/1.0"):
            request = f"HEAD {target} {version}\r\nHost: x\r\n".encode() + CLOSE + cookie + b"\r\n"
            head, body = head_and_body(exchange(served.server, request, timeout=10))
            assert head.split(b"\r\n")[0].endswith(b" 200 OK"), (target, head)
            assert expected in head.lower() and body == b"", (target, version, head)
            assert b"content-length: 0" not in head.lower(), (target, version, head)
    db = Database(served.server.database_url)
    try:
        # Before: a HEAD read the whole file and was audited as 24 MiB sent.
        last = _last_audit(db)
        assert last.kind == "recording" and last.outcome == "ok" and last.bytes == 0
    finally:
        db.dispose()
    access = served.server.output()
    assert f'"HEAD /ui/recording?name={quote(name, safe="")}" 200 0 ' in access


def test_an_if_range_sends_the_whole_file(served):
    # No validator is handed out, so none an If-Range sends is the file's: RFC 9110 says to
    # ignore the Range (before: a 206 of a file that may not be the one the client holds).
    name = served.names[2]
    head, body = head_and_body(
        exchange(served.server, served.download(name, b'Range: bytes=0-9\r\nIf-Range: "x"\r\n'))
    )
    assert head.startswith(b"HTTP/1.1 200 ")
    assert len(body) == 4004
    head, body = head_and_body(
        exchange(served.server, served.download(name, b"Range: bytes=0-9\r\n"))
    )
    assert head.startswith(b"HTTP/1.1 206 ") and body == b"RIFF" + b"\x01" * 6


def test_the_in_progress_gauge_counts_a_recording_being_sent(served):
    assert served.gauge() == 0
    with socket.create_connection(("127.0.0.1", served.server.port), timeout=30) as sock:
        sock.sendall(served.download(served.names[0]))
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
        # Before: only cdr/download was counted, so stalled recordings (or CSV answers of the
        # query API and the console) could fill the export limit while the gauge said 0.
        wait_until(lambda: served.gauge() == 1, "the recording counted in progress")
    wait_until(lambda: served.gauge() == 0, "nothing in progress once the client left")
