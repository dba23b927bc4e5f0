"""HTTP/1.0 compatibility for the clients the device serves (PHP's ``file_get_contents``).

The request-line leniency (raw spaces in a target) lives in ``http_protocol``.
"""

from __future__ import annotations

import tempfile

from starlette.types import ASGIApp, Message, Receive, Scope, Send


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
