"""The HTTP protocol ``serve`` runs: uvicorn's httptools protocol, lenient, with head and body
timeouts.

Nine differences from uvicorn's own, all at the socket edge where no ASGI middleware can reach:

- Request targets with raw spaces are accepted, as the PBX's embedded web server (Boa) does.
  The Yeastar docs print download links with literal spaces in the times
  (``...&starttime=2018-11-07 00:00:00&...``), and clients that paste such a link into a
  request line unencoded (PHP's ``file_get_contents``, raw sockets) work against the device.
  Strict parsers answer 400, so spaces in the target are percent-encoded before the parser runs.
  So are bytes past ASCII (UTF-8 typed into a link: curl sends it as typed), which nginx takes
  too; the parser answered them with a plain-text 400 where the API answers JSON.
- A connection that does not complete a request head within ``timeout_keep_alive`` seconds is
  closed. uvicorn only times out the idle gap *after* a response; a client that connects and
  sends nothing (or a byte a minute) would otherwise hold its socket forever, and a thousand of
  them exhaust the file limit. One value bounds both waits, so ``serve`` passes the
  ``idle_timeout_seconds`` setting as uvicorn's keep-alive timeout. Over HTTPS this wait
  starts once the TLS handshake is done; the handshake itself is bounded by the loop
  (``serve_loop.py``), since this protocol hears of a connection only after it.
- A request body that stops arriving (a Content-Length larger than what is sent, or a sender
  that stalls) closes the connection after the same number of seconds without a body byte, as
  nginx's ``client_body_timeout`` does. uvicorn would wait for the rest for ever, with the
  request's task and socket held. And since a byte just inside every timeout would restart
  that wait for ever, a body also has a deadline: ``BODY_GRACE_TIMEOUTS`` timeouts from its
  head, plus a second for every ``BODY_MIN_RATE`` bytes that arrived (a sender keeping up that
  rate is never cut; one dribbling a byte at a time is, after about three timeouts).
- Bytes that do not parse after pipelined requests that did (a Content-Length shorter than the
  body sent, so its rest reads as a next request) do not lose those requests' answers: they are
  sent first, then the 400, then the connection closes, as nginx does. uvicorn writes the 400
  and closes at once, cutting the answer being made (a download mid-stream) and those queued.
- A client that half-closes after its request (``shutdown(SHUT_WR)``: ``nc -N``, scripts that
  signal "no more requests") still gets the answer, then the close, as from nginx. uvicorn
  closes at the end of the client's stream, so the request's handler hears a disconnect and the
  client gets nothing (a login's token made and never sent). The end of the stream still closes
  at once where nothing is waiting for an answer, a head or body it cuts short, or an answer
  already being sent (a download whose client closed mid-stream).
- A connection reset before it was accepted is closed without reading it. A flood that
  connects, sends a request and resets (SO_LINGER 0) pays nothing for the answers, and keeps
  the accept queue full of such connections; uvicorn answers each request in full (from
  "unknown": the peer's address is gone), and every honest client waits behind the queue.
- A request answered before its body was whole (larger than the API accepts: errno 20000) ends
  its connection: the answer (its head saying ``connection: close``, ``http_head.py``), then a
  FIN, then what still arrives is read and dropped for at most ``LINGER_SECONDS`` (nginx's
  lingering close: closing at once with unread bytes would
  reset the connection, and the client could lose the answer). uvicorn kept the connection
  alive and parsed the rest of the body for nothing: 100 MB read whole, a chunked body that
  never ends held for ever. On a connection not kept alive (HTTP/1.0, ``Connection: close``)
  uvicorn closed at once, with the body's bytes unread: a reset, not a FIN.

- A response's head is written with its first body bytes, in one ``send()`` where uvicorn
  made two (``http_head.py``); a head whose body does not follow in the same turn of the
  event loop is written alone at its end.
- A request whose ``Transfer-Encoding`` names any coding but ``chunked`` alone (``gzip,
  chunked``) gets ``501 Not Implemented`` and the close, as RFC 9112 asks and nginx answers.
  The parser reads such a body as plain chunked and drops the other coding: a gzipped login
  would be handed to the API as if it were JSON.

This subclasses a private uvicorn class; pyproject.toml pins uvicorn below the next minor
release and tests/test_http_protocol.py checks the seam (the hooks overridden here).
"""

from __future__ import annotations

import asyncio
import re
import socket
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from cdrgate.http_head import HeadWithBody

_REQUEST_LINE = re.compile(rb"([A-Z]{3,10}) (.+) (HTTP/\d\.\d)")
MAX_REQUEST_LINE = 64 * 1024
# What the start of a request line can look like while it is still arriving ("GE", "GET ").
# Anything else (a TLS ClientHello from an https:// client, binary junk) goes to the parser at
# once, which refuses it, instead of waiting for a line end that will never come.
_REQUEST_START = re.compile(rb"[A-Z]{0,10}(?: |$)")
# Why a connection was closed, for the debug log.
_NO_HEAD = "that sent no complete request head in time"
_BODY_STOPPED = "whose request body stopped arriving"
_BODY_TOO_SLOW = "whose request body arrived too slowly"
# A request body's deadline (above): generous for any real sender (a 64 KiB API body at 1 KiB/s
# still fits), while a connection slot held by a dribbling sender comes back in ~30 s at the
# default timeout, not never.
BODY_GRACE_TIMEOUTS = 3
BODY_MIN_RATE = 1024  # bytes per second
# How long the rest of a body answered early is read and dropped before the close.
LINGER_SECONDS = 5.0
_LINGERED = "whose request body went on after its answer"
_UNKNOWN_CODING = "Unsupported transfer coding."


def known_transfer_coding(headers: list[tuple[bytes, bytes]]) -> bool:
    """No ``Transfer-Encoding``, or ``chunked`` alone (any case, across repeated headers)."""
    codings = [
        coding.strip().lower()
        for name, value in headers
        if name == b"transfer-encoding"
        for coding in value.split(b",")
        if coding.strip()
    ]
    return codings in ([], [b"chunked"])


def _over_ip(transport: asyncio.Transport) -> bool:
    sock = transport.get_extra_info("socket")
    return sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6)


def fix_request_line(line: bytes) -> bytes:
    """``GET /a?t=1 2&n=é HTTP/1.1`` -> ``GET /a?t=1%202&n=%C3%A9 HTTP/1.1``: spaces and bytes
    past ASCII in the target percent-encoded; other lines are left alone."""
    if line.count(b" ") <= 2 and line.isascii():  # every well-formed line
        return line
    match = _REQUEST_LINE.fullmatch(line)
    if match is None:
        return line
    target = match[2]
    if b" " not in target and target.isascii():
        return line
    return b" ".join((match[1], _RAW_IN_TARGET.sub(_percent_encoded, target), match[3]))


# What a client may put raw in a target that the parser refuses and nginx and the device take.
_RAW_IN_TARGET = re.compile(rb"[ \x80-\xff]")


def _percent_encoded(byte: re.Match[bytes]) -> bytes:
    return b"%%%02X" % byte[0][0]


class LenientHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._at_request_start = True
        self._pending = b""
        # What a request waits for from the client, one at a time: its head, then (only if
        # it did not come with the head) the rest of its body. The head's wait is a deadline
        # from the connection or the last response; the body's restarts at each read, up to
        # the body's own deadline (``_wait_for_body``).
        self._wait: asyncio.TimerHandle | None = None
        self._body_started = 0.0  # loop time its head completed
        self._body_bytes = 0
        self._in_body = False  # a request head is complete and its body is not
        # The request being answered (uvicorn keeps only the last parsed one, ``cycle``).
        self._answering: RequestResponseCycle | None = None
        # The 400 owed for bytes that did not parse, sent once the requests before them are
        # answered; reading stops at them.
        self._refusal: str | None = None
        # The refusal is a 501: the head named a transfer coding this server cannot undo.
        self._unknown_coding = False
        # The client half-closed: answer what it sent, then close.
        self._client_done = False
        # Answered before its body was whole: the rest is dropped until the close.
        self._lingering = False

    # -- the head and body timeouts ---------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._writes = HeadWithBody(transport, self.loop, self._close_answered)
        if self.client is None and _over_ip(transport):
            # Reset before it was accepted (the peer's address is already gone): whatever
            # request it queued has no one to answer. A flood that connects, sends a request
            # and resets fills the accept queue with these; each answered in full costs
            # ~0.8 ms, and every honest client waits its turn behind the queue.
            self.logger.debug("closing a connection reset before it was accepted")
            transport.abort()
            return
        self._wait_for(_NO_HEAD)

    def on_headers_complete(self) -> None:
        if not known_transfer_coding(self.headers):
            # Raised in a parser callback, this stops the parser: the body is never read, and
            # the refusal goes the way of bytes that do not parse (after earlier answers).
            self._unknown_coding = True
            raise httptools.HttpParserCallbackError(_UNKNOWN_CODING)
        self._stop_waiting()
        self._in_body = True
        self._body_started, self._body_bytes = self.loop.time(), 0
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A request answered before its body was whole never gets past here: its head said
        # ``connection: close`` (``http_head._closing``), so its cycle ended the connection
        # through ``_close_answered``, which lingers.
        if self._lingering:
            return  # its answer closed a connection not kept alive (``_close_answered``)
        if self._client_done and not self._answering_one():
            self.transport.close()
            return
        if self._refusal is not None:
            if not self.transport.is_closing() and not self._answering_one():
                self._refuse(self._refusal)
            return
        # A pipelined request may already be running; it has its head.
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._wait_for(_NO_HEAD)

    def eof_received(self) -> bool:  # type: ignore[override]
        """Keep the sending half open (True) while a complete request waits for its answer."""
        self._client_done = True
        if self._lingering:
            return False
        whole = self._at_request_start and not self._pending and not self._in_body
        # Once an answer is being sent, the end of the client's stream still ends it, as
        # before: a client that closes mid-download releases its database snapshot at once.
        waiting = self._answering is not None and not self._answering.response_started
        return whole and waiting

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def _wait_for(self, why_closed: str, seconds: float | None = None) -> None:
        self._stop_waiting()
        delay = self.timeout_keep_alive if seconds is None else seconds
        self._wait = self.loop.call_later(delay, self._timed_out, why_closed)

    def _wait_for_body(self) -> None:
        """The next body byte is awaited for a timeout, or until the body's deadline."""
        deadline = (
            self._body_started
            + BODY_GRACE_TIMEOUTS * self.timeout_keep_alive
            + self._body_bytes / BODY_MIN_RATE
        )
        left = deadline - self.loop.time()
        if left < self.timeout_keep_alive:
            self._wait_for(_BODY_TOO_SLOW, max(left, 0.0))
        else:
            self._wait_for(_BODY_STOPPED)

    def _close_answered(self) -> None:
        """How a connection not kept alive (HTTP/1.0, ``Connection: close``) ends after its
        answer: closed at once, or, while the answered request's body is still arriving,
        by the lingering close a kept-alive one gets. Closed at once with that body's bytes
        unread, the close was a reset: the client's send failed (Node's http emits
        ECONNRESET after the answer), and a client that reads only once its body is sent
        could lose the answer."""
        if self._in_body and not self.transport.is_closing():
            self.flow.resume_reading()  # what arrives is read and dropped
            self._linger()
        else:
            self.transport.close()

    def _linger(self) -> None:
        self._lingering = True
        self._in_body = False
        if self.transport.can_write_eof():
            self.transport.write_eof()  # after the answer's last byte
        self._wait_for(_LINGERED, LINGER_SECONDS)

    def _stop_waiting(self) -> None:
        if self._wait is not None:
            self._wait.cancel()
            self._wait = None

    def _timed_out(self, why_closed: str) -> None:
        self._wait = None
        if not self.transport.is_closing():
            self.logger.debug("closing a connection %s", why_closed)
            self.transport.close()

    # -- raw spaces in the request target ---------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None or self._lingering:
            return  # past bytes that did not parse, or a body answered: no request follows
        if self._at_request_start:
            data = self._pending + data
            # A bare LF ends the line too: the parser then refuses it with a 400 at once,
            # where waiting for a CRLF that never comes held the client to the head timeout.
            end = data.find(b"\n")
            if end == -1 and len(data) < MAX_REQUEST_LINE and _REQUEST_START.match(data):
                self._pending = data  # wait for the whole request line
                return
            self._pending = b""
            self._at_request_start = False
            if end > 0 and data[end - 1] == 13:  # CR
                end -= 1
            if end != -1:
                data = fix_request_line(data[:end]) + data[end:]
        super().data_received(data)
        if self._in_body:
            # Only after a read that left a body unfinished: a request whose body came with
            # its head (every GET, most POSTs) never starts this wait.
            self._wait_for_body()

    def on_message_complete(self) -> None:
        # The next bytes on this connection (no pipelining) start a new request line.
        self._at_request_start = True
        self._in_body = False
        self._stop_waiting()
        super().on_message_complete()

    # -- bytes that do not parse after requests that did -------------------------------------

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        self._answering = cycle
        # Its head leaves with its first body bytes (``http_head.py``); the cycle writes
        # nothing before its task runs.
        self._writes.answering(cycle)
        cycle.transport = self._writes  # type: ignore[assignment]
        super()._start_asgi_task(cycle, app)

    def send_400_response(self, msg: str) -> None:
        if self.cycle is not None and self.cycle.more_body:
            # The bad bytes are inside the last request's body: that request is refused too.
            # Queued, it is dropped; being answered, its handler may be waiting for that
            # body, so the 400 goes now and the close tells the handler.
            if self.pipeline and self.pipeline[0][0] is self.cycle:
                self.pipeline.popleft()
            else:
                self._refuse(msg)
                return
        if not self._answering_one():
            self._refuse(msg)
            return
        self._refusal = msg
        self._in_body = False
        self._stop_waiting()
        self.flow.pause_reading()

    def _refuse(self, msg: str) -> None:
        if not self._unknown_coding:
            super().send_400_response(msg)
            return
        content = [b"HTTP/1.1 501 Not Implemented\r\n"]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        reason = _UNKNOWN_CODING.encode("ascii")
        content.extend(
            [
                b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: %d\r\n" % len(reason),
                b"connection: close\r\n\r\n",
                reason,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()

    def _answering_one(self) -> bool:
        """A request parsed before is being answered, or waits its turn."""
        running = self._answering is not None and not self._answering.response_complete
        return running or bool(self.pipeline)
