"""Downloads that end badly hurt no one else: clients that vanish (FIN or RST), stall, read
slowly or crowd in, on a real server with real sockets, on both engines."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import pytest

from cdrgate.app import create_app
from cdrgate.errors import StorageUnavailable
from cdrgate.services import export
from cdrgate.settings import Settings
from cdrgate.storage import audit, cdrs
from cdrgate.storage.db import Database
from cdrgate.timefmt import format_pbx_time, parse_pbx_time
from tests.conftest import Flow, make_cdr
from tests.live import live_server, raw_request, recv_all, recv_at_least
from tests.recordings.conftest import RecordingFlow

START, END = "2026-05-01 00:00:00", "2026-05-31 23:59:59"
# Far more than loopback's socket buffers hold, so the server is mid-stream when we act.
ROWS = 60_000


@pytest.fixture
def big_store(db: Database) -> Database:
    base = parse_pbx_time("2026-05-02 00:00:00")
    records = [
        make_cdr(
            callid=f"c{i:06d}",
            timestart=format_pbx_time(base + i * 30),
            callfrom=str(1000 + i % 50),
        )
        for i in range(ROWS)
    ]
    with db.write() as conn:
        cdrs.insert_records(db, conn, records)
    return db


@pytest.fixture
def serve(db: Database, api_account) -> Iterator[Callable[..., tuple[int, Flow]]]:
    """``serve(**settings)`` -> (port, Flow over HTTP) of a real server on the test database."""
    with ExitStack() as stack:

        def start(**settings: Any) -> tuple[int, Flow]:
            app = create_app(Settings(database=db.url, access_log=False, **settings), database=db)
            port = stack.enter_context(live_server(app))
            http = stack.enter_context(
                httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
            )
            return port, Flow(http)

        yield start


def _link(flow: Flow, ext: str = "all") -> str:
    token = flow.token()
    answer = flow.get_random(token, ext, START, END)
    assert answer["status"] == "Success", answer
    return flow.download_url(token, answer["random"], ext, START, END)


def _audit(db: Database) -> list[Any]:
    with db.read() as conn:
        return audit.query(conn, limit=1000)


def _eventually(check: Callable[[], Any], timeout: float = 20) -> Any:
    """Poll until ``check()`` is truthy (a wait, not a speed assertion: the machine is shared)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


def _nothing_pinned(db: Database) -> bool:
    """No pooled connection out, and on PostgreSQL no session idle in a transaction."""
    if db.connections_in_use() != 0:
        return False
    if db.is_sqlite:
        with db.connect() as conn:
            busy = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()[0]
        return busy == 0
    with db.connect() as conn:
        idle = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%%'"
        ).scalar_one()
    return idle == 0


@contextmanager
def _stalled_download(port: int, target: str) -> Iterator[socket.socket]:
    """A client that starts a download and then stops reading."""
    sock = raw_request(port, target, rcvbuf=4096)
    try:
        assert recv_at_least(sock, 4096)[:15] == b"HTTP/1.1 200 OK"
        yield sock
    finally:
        _reset(sock)


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize("close", ["fin", "rst"])
def test_a_client_gone_mid_stream_releases_the_database_and_is_audited_as_aborted(
    big_store, serve, close
):
    port, flow = serve()
    sock = raw_request(port, _link(flow), rcvbuf=8192)
    received = recv_at_least(sock, 100_000)
    assert received.startswith(b"HTTP/1.1 200 OK")
    if close == "fin":
        # FIN at once, whatever is still unread. (Draining what had arrived first, so that
        # close() would send FIN rather than RST, could read the whole export when the server
        # kept the socket's small buffer full: it then ended "ok", once in a suite run.) The
        # socket stays half-open until the server has seen the FIN, so no RST overtakes it.
        sock.shutdown(socket.SHUT_WR)
    else:
        _reset(sock)

    try:
        records = _eventually(lambda: [r for r in _audit(big_store) if r.outcome != "failed"])
    finally:
        sock.close()
    assert [r.outcome for r in records] == ["aborted"]
    assert 100_000 <= records[0].bytes < ROWS * 80
    assert 0 < records[0].rows < ROWS
    assert _eventually(lambda: _nothing_pinned(big_store))
    # And the server goes on serving everyone.
    assert flow.download(flow.token(), "1000").text.count("\n") == ROWS // 50 + 1


def test_a_client_reading_below_the_minimum_rate_is_cut_and_audited(big_store, serve):
    port, flow = serve(download_min_rate=50_000_000, download_rate_window=1)
    sock = raw_request(port, _link(flow), rcvbuf=4096)
    sock.settimeout(60)
    received = b""
    deadline = time.monotonic() + 60
    while not [r for r in _audit(big_store) if r.outcome == "cut"]:  # read ~10 KB/s
        assert time.monotonic() < deadline, "the slow reader was never cut"
        received += sock.recv(1024)
        time.sleep(0.1)
    _reset(sock)
    assert received.startswith(b"HTTP/1.1 200 OK")
    [record] = _audit(big_store)
    # What the server had handed to the kernel when it gave up: far from the whole export.
    assert record.outcome == "cut" and 0 < record.bytes < ROWS * 80
    assert _eventually(lambda: _nothing_pinned(big_store))


def test_past_the_download_limits_a_client_hears_20010_and_the_api_stays_up(big_store, serve):
    port, flow = serve(export_max_concurrent=3, export_max_per_account=2)
    with _stalled_download(port, _link(flow)), _stalled_download(port, _link(flow)):
        link = _link(flow)  # login and get_random still answer
        assert flow.http.get(link).json() == {"status": "Failed", "errno": "20010"}
    # The stalled downloads ended (reset): their slots are free again.
    _eventually(lambda: len([r for r in _audit(big_store) if r.outcome == "aborted"]) == 2)
    assert flow.download(flow.token(), "1001").text.count("\n") == ROWS // 50 + 1


def test_many_stalled_downloads_leave_logins_downloads_and_pushes_their_capacity(big_store, serve):
    # More stalled readers than the PostgreSQL pool has connections (5 + 10).
    port, flow = serve(export_max_concurrent=40, export_max_per_account=40)
    with ExitStack() as stack:
        for _ in range(24):
            stack.enter_context(_stalled_download(port, _link(flow)))
        assert _eventually(lambda: big_store.connections_in_use() == 0)
        assert flow.download(flow.token(), "1002").text.count("\n") == ROWS // 50 + 1
    assert _eventually(lambda: _nothing_pinned(big_store))


def test_http10_download_when_the_database_breaks_mid_stream_gets_an_errno_not_a_500(
    big_store, serve, monkeypatch
):
    port, flow = serve()
    real, calls = export.read_page, []

    def breaks_after_the_first_page(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise StorageUnavailable("the database went away")
        return real(*args, **kwargs)

    link = _link(flow)
    monkeypatch.setattr(export, "read_page", breaks_after_the_first_page)
    sock = raw_request(port, link, version="1.0")
    response = recv_all(sock).decode()
    sock.close()
    head, _, body = response.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200")
    assert body == '{"status":"Failed","errno":"30003"}'
    [record] = _eventually(lambda: _audit(big_store))
    assert (record.outcome, record.errno) == ("failed", "30003")


def test_http10_download_larger_than_the_spool_limit_gets_20010(big_store, serve):
    port, flow = serve(http10_spool_max_bytes=200_000)
    sock = raw_request(port, _link(flow), version="1.0")
    body = recv_all(sock).decode().partition("\r\n\r\n")[2]
    sock.close()
    assert body == '{"status":"Failed","errno":"20010"}'
    # A small one still gets its Content-Length.
    sock = raw_request(port, _link(flow, "1003"), version="1.0")
    head, _, body = recv_all(sock).decode().partition("\r\n\r\n")
    sock.close()
    assert f"content-length: {len(body.encode())}" in head.lower()
    assert body.count("\n") == ROWS // 50 + 1


RECORDING = "20260502-000000-1000-2000.wav"


@pytest.fixture
def big_recording(big_store: Database, tmp_path) -> str:
    """A recording folder with one file far larger than loopback's buffers, named by a CDR."""
    folder = tmp_path / "recordings"
    folder.mkdir()
    (folder / RECORDING).write_bytes(b"RIFF" + bytes(16 * 1024 * 1024))
    with big_store.write() as conn:
        cdrs.insert_records(big_store, conn, [make_cdr(callid="rec.1", recording=RECORDING)])
    return str(folder)


def _recording_link(flow: Flow) -> str:
    recordings = RecordingFlow(flow.http)
    token = recordings.token()
    random = recordings.random(token, RECORDING)
    return f"/api/v1.1.0/recording/download?recording={RECORDING}&random={random}&token={token}"


def test_recordings_and_query_csv_share_the_download_limits(big_store, big_recording, serve):
    port, flow = serve(export_max_concurrent=8, export_max_per_account=1, recordings=big_recording)
    token = flow.token()
    csv = {"format": "csv", "token": token}
    with _stalled_download(port, _recording_link(flow)):
        # The account's one transfer is a recording: every other long transfer waits.
        assert flow.http.get(_link(flow)).json() == {"status": "Failed", "errno": "20010"}
        busy = flow.http.get("/v1/cdrs", params=csv)
        assert busy.status_code == 503 and busy.json()["errno"] == "20010"
        assert busy.headers["Retry-After"]
        assert flow.http.get(_recording_link(flow)).json() == {
            "status": "Failed",
            "errno": "20010",
        }
    # The stalled transfer was reset: its slot is free (a refused random is spent, as for CDRs).
    _eventually(lambda: flow.http.get(_recording_link(flow)).status_code == 200)
    with _stalled_download(port, f"/v1/cdrs?format=csv&token={token}"):
        assert flow.http.get(_link(flow)).json() == {"status": "Failed", "errno": "20010"}
    _eventually(lambda: flow.http.get("/v1/cdrs", params=csv).status_code == 200)


def test_small_downloads_pipelined_by_a_client_that_reads_nothing_are_cut(big_store, serve):
    """Small downloads are sent whole, without the streaming loop; a keep-alive client that
    pipelines many and reads none fills the connection's buffers, and the send that then
    waits is cut at the minimum rate's deadline like any other, not held for ever."""
    port, flow = serve(download_min_rate=50_000_000, download_rate_window=1)
    token = flow.token()
    day_start, day_end = "2026-05-03 00:00:00", "2026-05-03 23:59:59"
    exts = ",".join(str(1000 + n) for n in range(8))  # ~460 calls, ~60 KB: sent whole
    targets = []
    for _ in range(200):  # ~12 MB: far more than loopback's buffers hold
        answer = flow.get_random(token, exts, day_start, day_end)
        assert answer["status"] == "Success", answer
        targets.append(flow.download_url(token, answer["random"], exts, day_start, day_end))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    try:
        sock.sendall(
            b"".join(f"GET {t} HTTP/1.1\r\nHost: pbx.test\r\n\r\n".encode() for t in targets)
        )
        cut = _eventually(lambda: [r for r in _audit(big_store) if r.outcome == "cut"], timeout=30)
        assert cut, "the stalled send was never cut"
        assert recv_all(sock).count(b"HTTP/1.1 200 OK") < len(targets)  # then the close
    finally:
        _reset(sock)
    assert flow.get_random(token, "1001", day_start, day_end)["status"] == "Success"
