"""Accept request targets with raw spaces, as the PBX's embedded web server (Boa) does.

The Yeastar docs print download links with literal spaces in the times
(``...&starttime=2018-11-07 00:00:00&...``), and clients that paste such a link into a
request line without encoding it (PHP's ``file_get_contents``, raw sockets) work against the
device. Strict HTTP parsers answer 400. This protocol percent-encodes spaces inside the request
target of a request line before the parser sees it; everything else is uvicorn's httptools
protocol, unchanged.
"""

from __future__ import annotations

import re
import tempfile
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_REQUEST_LINE = re.compile(rb"([A-Z]{3,10}) (.+) (HTTP/\d\.\d)")
MAX_REQUEST_LINE = 64 * 1024


def fix_request_line(line: bytes) -> bytes:
    """``GET /a?t=1 2 HTTP/1.1`` -> ``GET /a?t=1%202 HTTP/1.1``; other lines are left alone."""
    match = _REQUEST_LINE.fullmatch(line)
    if match is None or b" " not in match[2]:
        return line
    return b" ".join((match[1], match[2].replace(b" ", b"%20"), match[3]))


class LenientHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._at_request_start = True
        self._pending = b""

    def data_received(self, data: bytes) -> None:
        if self._at_request_start:
            data = self._pending + data
            end = data.find(b"\r\n")
            if end == -1 and len(data) < MAX_REQUEST_LINE:
                self._pending = data  # wait for the whole request line
                return
            self._pending = b""
            self._at_request_start = False
            if end != -1:
                data = fix_request_line(data[:end]) + data[end:]
        super().data_received(data)

    def on_message_complete(self) -> None:
        # The next bytes on this connection (no pipelining) start a new request line.
        self._at_request_start = True
        super().on_message_complete()


class Http10Compat:
    """Give HTTP/1.0 clients a Content-Length instead of chunked encoding.

    PHP's ``file_get_contents`` speaks HTTP/1.0 by default, where chunked transfer coding does
    not exist; uvicorn nonetheless chunks streamed responses, which would leave chunk sizes in
    the CSV. For HTTP/1.0 requests only, a response without a length is spooled (in memory up
    to ``SPOOL_MEMORY`` bytes, then on disk) and sent with its length.
    """

    SPOOL_MEMORY = 1024 * 1024

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("http_version") != "1.0":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        spool = tempfile.SpooledTemporaryFile(max_size=self.SPOOL_MEMORY)
        try:

            async def capture(message: Message) -> None:
                nonlocal start
                if message["type"] == "http.response.start":
                    headers = [(k, v) for k, v in message.get("headers", [])]
                    if any(k.lower() == b"content-length" for k, _ in headers):
                        start = None
                        await send(message)
                        return
                    start = {**message, "headers": headers}
                    return
                if message["type"] != "http.response.body" or start is None:
                    await send(message)
                    return
                spool.write(message.get("body", b""))
                if message.get("more_body", False):
                    return
                size = spool.tell()
                spool.seek(0)
                headers = [*start["headers"], (b"content-length", str(size).encode())]
                await send({**start, "headers": headers})
                while chunk := spool.read(256 * 1024):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})

            await self.app(scope, receive, capture)
        finally:
            spool.close()
