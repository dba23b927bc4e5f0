"""An HTTP GET handed to the ASGI app directly, as uvicorn hands it, so that a test can cancel
its task at a chosen moment (uvicorn cancels a request's task at the drain's deadline)."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message


def get(
    app: ASGIApp, target: str, sent: list[Message], *, stalled: bool = False
) -> asyncio.Future[None]:
    """``GET target`` (path and query) from ``app`` as a task of the running loop, from a
    client that says nothing more; what the app sends goes to ``sent``. ``stalled``: the
    first message sent never returns (a connection whose buffers are full)."""
    path, query = target.split("?", 1)
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": query.encode(), "client": ("127.0.0.1", 50000),
        "server": ("pbx.test", 8088), "headers": [(b"host", b"pbx.test:8088")],
    }  # fmt: skip

    async def receive() -> Message:
        await asyncio.Event().wait()  # the client says nothing more
        return {}

    async def send(message: Message) -> None:
        sent.append(message)
        if stalled:
            await asyncio.Event().wait()

    return asyncio.ensure_future(app(scope, receive, send))
