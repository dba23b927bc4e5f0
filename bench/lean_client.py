"""The small-flows bench's cheaper load generator (issue 17, twenty-fourth round): the same
requests as ``small_flows.Connection`` and ``one_flow``, byte for byte, over an
``asyncio.Protocol`` on uvloop (``small_flows.py --client lean``, the default).

The generator shares the two cores with the server and PostgreSQL, so every microsecond it
spends a request is counted against the server's ratio. The stream client spends its ~40 us
a GET / and ~70 us a flow request (quiet) mostly in Python: a ``StreamReader`` read or two per
answer, a task per ``wait_for``, a coroutine chain resumed per answer, ``urlencode`` of five
fields and ``json.dumps`` per flow, and the send. Here each client is a ``Driver`` on its
connection: ``data_received`` parses the answer as it arrives, checks it and sends the next
request from the callback itself (no task, future or coroutine a request); each request's
30 s bound is kept by one watchdog a scenario; a flow's fixed parts (the get_random body, the
download query up to the random) are built once an extension and day. What the server is
asked, what is checked of each answer and how an error is counted (the connection reopened)
do not change. ``LeanConnection.request`` (a future) serves the logins.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import date, timedelta
from typing import Any, cast
from urllib.parse import quote_plus

HEAD_END = b"\r\n\r\n"
DAYS = [str(date(2026, 1, 1) + timedelta(days=index)) for index in range(365)]
TIMEOUT = 30.0  # seconds a request may take, as the stream client's ``wait_for``


class LeanConnection(asyncio.Protocol):
    """Just enough HTTP/1.1 over a protocol: keep-alive, Content-Length and chunked bodies.
    One request at a time; ``request`` returns (status, body) as ``small_flows.Connection``."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.handler: Driver | None = None  # answers go to it, when set, not to a future
        self.pending = False  # a request is sent and not answered
        self.sent_at = 0.0  # when the pending request was sent, for the watchdog
        self.buffer = bytearray()
        self.status = 0
        self.length = -1  # the body's Content-Length; -1 while the head is awaited
        self.chunked = False
        self.parts: list[bytes] = []
        self.head_prefix = f"Host: {host}:{port}\r\nContent-Type: application/json\r\n".encode()

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: self, self.host, self.port)

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        self._fail(ConnectionResetError("closed by the client"))

    # -- protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport is not a subclass of asyncio.Transport, though it is one.
        self.transport = cast(asyncio.Transport, transport)
        self.buffer.clear()
        self.length, self.chunked, self.parts = -1, False, []

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail(exc or ConnectionResetError("closed by the server"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            self._parse()
        except ValueError as exc:  # a malformed answer: counted as an error by the caller
            self._fail(exc)

    # -- requests

    def request(
        self, method: str, target: str, body: bytes = b""
    ) -> asyncio.Future[tuple[int, bytes]]:
        """Send one request; the future resolves with (status, body) or the failure."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        if self.transport is None:
            waiter.set_exception(ConnectionResetError("not connected"))
            return waiter
        self.waiter = waiter
        self.send(method, target, body)
        return waiter

    def send(self, method: str, target: str, body: bytes = b"") -> None:
        """Send one request; its answer goes to ``handler`` (or the waiting future)."""
        if self.transport is None:
            self.pending = True
            self._fail(ConnectionResetError("not connected"))
            return
        self.pending, self.sent_at = True, time.perf_counter()
        self.transport.write(
            b"%s %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s"
            % (method.encode(), target.encode(), self.head_prefix, len(body), body)
        )

    def expire(self, now: float) -> None:
        """The watchdog's check: a request pending longer than ``TIMEOUT`` fails."""
        if self.pending and now - self.sent_at > TIMEOUT:
            self._fail(TimeoutError(f"no answer in {TIMEOUT:.0f} s"))

    # -- parsing

    def _parse(self) -> None:
        buffer = self.buffer
        if self.length < 0 and not self.chunked:
            end = buffer.find(HEAD_END)
            if end < 0:
                return
            head = bytes(buffer[:end]).lower()
            del buffer[: end + 4]
            self.status = int(head[9:12])
            if b"transfer-encoding: chunked" in head:
                self.chunked, self.parts = True, []
            else:
                # No Content-Length: an empty body, as the stream client reads it.
                start = head.find(b"content-length:")
                stop = head.find(b"\r\n", start)
                self.length = (
                    int(head[start + 15 : stop if stop >= 0 else None]) if start >= 0 else 0
                )
        if self.chunked:
            self._parse_chunks()
        elif len(buffer) >= self.length:
            body = bytes(buffer[: self.length])
            del buffer[: self.length]
            self.length = -1
            self._done(body)

    def _parse_chunks(self) -> None:
        buffer = self.buffer
        while True:
            line_end = buffer.find(b"\r\n")
            if line_end < 0:
                return
            size = int(bytes(buffer[:line_end]).split(b";")[0], 16)
            if size == 0:  # the last chunk, then the (empty) trailer's line
                if len(buffer) < line_end + 4:
                    return
                del buffer[: line_end + 4]
                self.chunked = False
                body, self.parts = b"".join(self.parts), []
                self._done(body)
                return
            if len(buffer) < line_end + 2 + size + 2:
                return
            self.parts.append(bytes(buffer[line_end + 2 : line_end + 2 + size]))
            del buffer[: line_end + 2 + size + 2]

    def _done(self, body: bytes) -> None:
        self.pending = False
        if self.handler is not None:
            self.handler.answered(self.status, body)
            return
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((self.status, body))

    def _fail(self, exc: BaseException) -> None:
        if not self.pending:
            return
        self.pending = False
        if self.handler is not None:
            self.handler.failed(exc)
            return
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class FlowRequests:
    """A flow's requests as the stream client builds them (``json.dumps``, ``urlencode``), the
    fixed parts made once per extension and day: the bytes sent are the same."""

    def __init__(self, api: str, token: str) -> None:
        self.random_target = f"{api}/cdr/get_random?token={token}"
        self.download_prefix = f"{api}/cdr/download?"
        self.token = quote_plus(token)
        self.cache: dict[tuple[str, str], tuple[bytes, str]] = {}

    def parts(self, ext: str, day: str) -> tuple[bytes, str]:
        """The get_random body and the download query up to ``&random=``."""
        made = self.cache.get((ext, day))
        if made is None:
            start, end = f"{day} 00:00:00", f"{day} 23:59:59"
            body = f'{{"extid": "{ext}", "starttime": "{start}", "endtime": "{end}"}}'.encode()
            query = (
                f"{self.download_prefix}extid={ext}&starttime={quote_plus(start)}"
                f"&endtime={quote_plus(end)}&token={self.token}&random="
            )
            made = self.cache[(ext, day)] = (body, query)
        return made


async def watchdog(conns: list[LeanConnection], deadline: float) -> None:
    """Fails any request pending longer than ``TIMEOUT``, once a second, until the scenario's
    clients are done (they stop sending at ``deadline``; the last may wait ``TIMEOUT`` more)."""
    while time.perf_counter() < deadline + TIMEOUT + 1:
        await asyncio.sleep(1.0)
        now = time.perf_counter()
        if now > deadline and not any(conn.pending for conn in conns):
            return
        for conn in conns:
            conn.expire(now)


class Driver:
    """One client of a scenario, driven from its connection's callbacks: each answer is checked
    and the next request sent from ``data_received`` itself, so a request costs no task, future
    or coroutine resumption. The same picks, requests, checks and error handling as
    ``small_flows.one_flow`` and its client loop (an error: counted, the connection reopened)."""

    def __init__(
        self, conn: LeanConnection, flows: FlowRequests | None, picker: random.Random,
        deadline: float, tally: Any,
    ) -> None:  # fmt: skip
        self.conn, self.flows, self.picker = conn, flows, picker
        self.deadline, self.tally = deadline, tally
        self.state = "idle"
        self.query = ""
        self.started = 0.0
        self.reopening: asyncio.Future[None] | None = None
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        conn.handler = self

    def next(self) -> None:
        now = time.perf_counter()
        if now >= self.deadline:
            self.state = "idle"
            if not self.finished.done():
                self.finished.set_result(None)
            return
        self.started = now
        if self.flows is None:
            self.state = "trivial"
            self.conn.send("GET", "/")
            return
        ext = str(1000 + self.picker.randrange(50))
        body, self.query = self.flows.parts(ext, DAYS[self.picker.randrange(365)])
        self.state = "random"
        self.conn.send("POST", self.flows.random_target, body)

    def answered(self, status: int, body: bytes) -> None:
        ok: bool | str
        if self.state == "trivial":
            ok = (status == 200 and body.startswith(b"{")) or f"GET /: {status} {body[:120]!r}"
        elif self.state == "random":
            if status != 200 or b'"Success"' not in body:
                return self.record(f"get_random: {status} {body[:120]!r}")
            try:
                random_key = json.loads(body)["random"]
            except (ValueError, KeyError) as exc:
                return self.record(f"{type(exc).__name__}: {exc}")
            self.state = "download"
            self.conn.send("GET", self.query + quote_plus(random_key))
            return
        else:
            # A day with no call for this extension is a valid 20021 answer, not an error.
            good = status == 200 and (body.startswith(b"callid,") or b'"20021"' in body)
            ok = good or f"download: {status} {body[:120]!r}"
        self.record(ok)

    def failed(self, exc: BaseException) -> None:
        self.record(f"{type(exc).__name__}: {exc}")

    def record(self, ok: bool | str) -> None:
        if ok is True:
            self.tally.latencies.append(time.perf_counter() - self.started)
            self.next()
            return
        self.tally.errors += 1
        self.tally.first_error = self.tally.first_error or str(ok)
        self.state = "reopening"
        self.reopening = asyncio.ensure_future(self.reopen())  # held: a task needs a reference

    async def reopen(self) -> None:
        self.conn.handler = None  # the close's own failure is not this request's
        await self.conn.close()
        try:
            await self.conn.open()
        except OSError as exc:
            self.tally.errors += 1
            self.tally.first_error = self.tally.first_error or f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.1)  # the server is gone: do not spin
        self.conn.handler = self
        self.next()
