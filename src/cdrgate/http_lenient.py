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
from typing import Any

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
