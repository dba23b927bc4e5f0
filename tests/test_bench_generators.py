"""The small-flows bench's load generators ask the same of the server (issue 17, twenty-fourth
round): the lean client (``bench/lean_client.py``) and wrk (``bench/small_flows.lua``) send
the stream client's requests byte for byte, and check and count answers as it does. Against
a fake server on loopback that records every request; no timing is asserted."""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json
import os
import re
import shutil
import sys
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

# Appended, not prepended: no bench script may shadow a module the other tests import.
sys.path.append(str(Path(__file__).resolve().parent.parent / "bench"))
small_flows: Any = importlib.import_module("small_flows")
wrk_client: Any = importlib.import_module("wrk_client")

API = "/api/v1.1.0"
_HOST = re.compile(rb"Host: 127\.0\.0\.1:\d+")


class FakeServer:
    """Answers login, get_random (its echo, and a random that needs quoting), download (a CSV,
    chunked for odd extensions) and GET /; records each request's bytes under its token."""

    def __init__(self, fail_downloads: bool = False) -> None:
        self.requests: dict[str, list[bytes]] = defaultdict(list)
        self.logins = 0
        self.fail_downloads = fail_downloads

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                raw = _HOST.sub(b"Host: HOST", head + body)  # each run has its own port
                writer.write(self.answer(raw, head.split(b" ")[1].decode(), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client closed; or the test's loop ends before the close is read
        finally:
            writer.close()

    def answer(self, raw: bytes, target: str, body: bytes) -> bytes:
        path = urlsplit(target).path
        query = {key: values[0] for key, values in parse_qs(urlsplit(target).query).items()}
        if path == "/":
            return _plain(b'{"status":"ok"}')
        if path == f"{API}/login":
            self.logins += 1
            return _plain(json.dumps({"status": "Success", "token": f"t{self.logins}"}).encode())
        self.requests[query["token"]].append(raw)
        if path == f"{API}/cdr/get_random":
            fields = json.loads(body)
            random = _random_for(raw)
            return _plain(json.dumps({"status": "Success", **fields, "random": random}).encode())
        if self.fail_downloads:
            return _plain(b'{"status":"Failed","errno":"20020"}')
        csv = f"callid,timestart\r\n{query['extid']},{query['random']}\r\n".encode()
        if int(query["extid"]) % 2:
            half = len(csv) // 2
            chunks = b"".join(
                b"%x\r\n%s\r\n" % (len(part), part) for part in (csv[:half], csv[half:])
            )
            return b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
        return _plain(csv)


def _random_for(get_random: bytes) -> str:
    """The fake random of a get_random request: one per request, and it needs quoting."""
    return "r+/=" + hashlib.sha256(get_random).hexdigest()[:8]


def _plain(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


# Long enough that each client finishes flows on a loaded machine (CI runs two suites at once):
# the tests compare what was sent, not how fast.
SECONDS = 1.0


async def _run(fake: FakeServer, generator: str, kind: str) -> Any:
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        return await small_flows.scenario(
            f"http://127.0.0.1:{port}",
            "md5",
            4,
            SECONDS,
            kind,
            [os.getpid()],
            None,
            None,
            generator,
        )


def _scenario(fake: FakeServer, generator: str, kind: str = "flow", loop: str = "asyncio") -> Any:
    runner = small_flows.uvloop.run if loop == "uvloop" else asyncio.run
    return runner(_run(fake, generator, kind))


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_lean_client_sends_the_stream_clients_flows_byte_for_byte(loop):
    stream, lean = FakeServer(), FakeServer()
    streamed, leaned = _scenario(stream, "asyncio"), _scenario(lean, "lean", loop=loop)
    assert streamed.errors == leaned.errors == 0
    assert leaned.done > 0 and streamed.done > 0
    assert sorted(stream.requests) == sorted(lean.requests) == ["t1", "t2", "t3", "t4"]
    for token, sent in lean.requests.items():
        # Each client picks from its own seeded generator: the same flows in the same order.
        same = min(len(sent), len(stream.requests[token]))
        assert same >= 2
        assert sent[:same] == stream.requests[token][:same]


def test_lean_client_counts_an_errno_answer_as_an_error():
    tally = _scenario(FakeServer(fail_downloads=True), "lean")
    assert tally.done == 0 and tally.errors > 0
    assert tally.first_error.startswith("download: 200") and "20020" in tally.first_error


def test_lean_client_trivial_path():
    tally = _scenario(FakeServer(), "lean", kind="trivial")
    assert tally.done > 0 and tally.errors == 0


async def _close(server: asyncio.Server) -> None:
    server.close()
    await server.wait_closed()
    # wrk has exited: its connections' handlers end on their EOF.
    await asyncio.gather(
        *(task for task in asyncio.all_tasks() if task is not asyncio.current_task())
    )


def _expected_flow(token: str, get_random: bytes, random: str) -> tuple[bytes, bytes]:
    """The stream client's two requests (small_flows.Connection, one_flow) for this pick."""
    fields = json.loads(get_random.split(b"\r\n\r\n", 1)[1])
    ext, start, end = fields["extid"], fields["starttime"], fields["endtime"]

    def request(method: str, target: str, body: bytes = b"") -> bytes:
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: HOST\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    body = json.dumps({"extid": ext, "starttime": start, "endtime": end}).encode()
    query = urlencode(
        {"extid": ext, "starttime": start, "endtime": end, "token": token, "random": random}
    )
    return (
        request("POST", f"{API}/cdr/get_random?token={token}", body),
        request("GET", f"{API}/cdr/download?{query}"),
    )


@pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)"
)
@pytest.mark.parametrize("fail_downloads", [False, True])
def test_wrk_script_sends_the_stream_clients_flows(fail_downloads):
    fake = FakeServer(fail_downloads)
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(asyncio.start_server(fake.handle, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        ran = wrk_client.run(f"http://127.0.0.1:{port}", 2, 1, "flow", ["t1", "t2"])
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.run_until_complete(_close(server))
        loop.close()
    assert sorted(fake.requests) == ["t1", "t2"]
    for token, sent in fake.requests.items():
        assert len(sent) >= 2
        for get_random, download in zip(sent[::2], sent[1::2], strict=False):
            expected = _expected_flow(token, get_random, _random_for(get_random))
            assert (get_random, download) == expected
    if fail_downloads:
        assert ran.done == 0 and ran.errors > 0 and "20020" in ran.first_error
    else:
        assert ran.done > 0 and ran.errors == 0
