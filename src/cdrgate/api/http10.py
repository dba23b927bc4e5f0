"""HTTP/1.0 clients: a Content-Length instead of chunked encoding."""

from __future__ import annotations

import logging
import tempfile

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cdrgate.api.envelope import failure
from cdrgate.errors import Errno

log = logging.getLogger("cdrgate.http")


class SpoolFull(Exception):
    """An HTTP/1.0 response grew past the spool limit before it was complete."""


class Http10Compat:
    """Give HTTP/1.0 clients a Content-Length instead of chunked encoding.

    PHP's ``file_get_contents`` speaks HTTP/1.0 by default, where chunked transfer coding does
    not exist; uvicorn nonetheless chunks streamed responses, which would leave chunk sizes in
    the CSV. For HTTP/1.0 requests only, a response without a length is spooled (in memory up
    to ``SPOOL_MEMORY`` bytes, then in the temp directory, at most ``max_bytes``) and sent with
    its length. Nothing has reached the client while the spool fills, so a download that
    fails or outgrows the limit is answered with an errno envelope instead (30003 / 20010),
    never a bare 500.
    """

    SPOOL_MEMORY = 1024 * 1024

    def __init__(self, app: ASGIApp, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A HEAD has no body to measure (an empty one would say Content-Length: 0).
        if (
            scope["type"] != "http"
            or scope.get("http_version") != "1.0"
            or scope.get("method") == "HEAD"
        ):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        passed_through = completed = False
        spool = tempfile.SpooledTemporaryFile(max_size=self.SPOOL_MEMORY)
        try:

            async def capture(message: Message) -> None:
                nonlocal start, passed_through, completed
                if message["type"] == "http.response.start":
                    headers = [(k, v) for k, v in message.get("headers", [])]
                    if any(k.lower() == b"content-length" for k, _ in headers):
                        passed_through = True
                        await send(message)
                        return
                    start = {**message, "headers": headers}
                    return
                if message["type"] != "http.response.body" or start is None:
                    await send(message)
                    return
                body = message.get("body", b"")
                if spool.tell() + len(body) > self.max_bytes:
                    raise SpoolFull(f"HTTP/1.0 response over {self.max_bytes} bytes")
                spool.write(body)
                if message.get("more_body", False):
                    return
                size = spool.tell()
                spool.seek(0)
                headers = [*start["headers"], (b"content-length", str(size).encode())]
                await send({**start, "headers": headers})
                while chunk := spool.read(256 * 1024):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                completed = True

            try:
                await self.app(scope, receive, capture)
            except Exception as exc:
                if passed_through:
                    raise
                full = isinstance(exc, SpoolFull) or (
                    isinstance(exc, ExceptionGroup) and exc.subgroup(SpoolFull) is not None
                )
                errno = Errno.SERVER_BUSY if full else Errno.APISRV_DOWN
                log.warning("HTTP/1.0 download not sent (%s): errno %s", exc, errno.value)
                await failure(errno)(scope, receive, send)
                return
            if start is not None and not completed:
                # The app returned without finishing the body (the download was cut).
                await failure(Errno.APISRV_DOWN)(scope, receive, send)
        finally:
            spool.close()
