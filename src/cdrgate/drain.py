"""Graceful shutdown: what happens between SIGTERM and exit.

uvicorn does the draining (``timeout_graceful_shutdown``): it stops accepting, lets running
requests finish and, at the deadline, cancels the rest. Two things are ours:

- a download cut at the deadline writes its audit record as its task unwinds (in a worker
  thread, see ``api/streaming``). uvicorn starts the app's shutdown right after cancelling,
  and that closes the database: :class:`DrainAudit` holds the shutdown until the cancelled
  requests have unwound (a few seconds at most), so their records are written first;
- the process exits 0 after a drain: uvicorn re-raises SIGTERM once it has stopped, which
  with the default handler would kill the process with a signal status.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from types import FrameType

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("cdrgate.drain")

# How long shutdown waits for cancelled requests to unwind.
UNWIND_SECONDS = 5.0


class DrainAudit:
    """ASGI middleware: count requests in flight; on lifespan shutdown, let the cut ones unwind
    before the app's own shutdown closes the database."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._lifespan_receive(receive), send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    def _lifespan_receive(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self.settle()
            return message

        return wrapped

    async def settle(self) -> None:
        deadline = time.monotonic() + UNWIND_SECONDS
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.in_flight:
            log.warning("%d request(s) still running at exit", self.in_flight)


def exit_zero_on_sigterm() -> None:
    """Make SIGTERM end the process with status 0 (see the module docstring)."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, handler)


def ignore_sighup() -> None:
    """One ``serve`` process has nothing to reload: its settings and TLS certificate are read
    at start (``--workers N`` is uvicorn's supervisor, whose SIGHUP replaces the workers one by
    one). SIGHUP's default, though, ends the process at once, without the drain and with the
    running downloads unaudited; it is what logrotate's usual ``postrotate`` and a closed
    terminal send. So it is logged and ignored (docs/operations.md, "Signals")."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        log.warning(
            "SIGHUP ignored: logs go to stderr (nothing to reopen) and settings and the TLS "
            "certificate are read at start; restart (SIGTERM drains) to apply a change"
        )

    signal.signal(signal.SIGHUP, handler)
