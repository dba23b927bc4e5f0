"""The event loop ``serve`` runs: uvicorn's own (uvloop), with the TLS handshake bounded by the
idle timeout.

A client that connects to an HTTPS listener and never finishes its handshake (sends nothing,
half a ClientHello, stops mid-way) is held by the loop, not by the HTTP protocol: the protocol
hears of a connection only once its handshake is done (``connection_made``), and of one whose
handshake fails not at all. So the protocol's head timeout cannot reach it, and the loop's own
bound applies: 60 s by default, ~6x what a silent plain-HTTP socket costs at the default
``idle_timeout_seconds``. uvicorn creates its listening servers without a handshake timeout and
has no option for one, so the loop it is given adds the idle timeout to every TLS server it
creates (on ``--workers N`` too: each worker builds its loop from this factory).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import uvloop

from cdrgate import sqlite_memory


class _HandshakeBoundedLoop(uvloop.Loop):
    handshake_timeout: float

    async def create_server(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> asyncio.AbstractServer:
        # Only for TLS: the loop refuses a handshake timeout on a plain listener.
        if kwargs.get("ssl") is not None and kwargs.get("ssl_handshake_timeout") is None:
            kwargs["ssl_handshake_timeout"] = self.handshake_timeout
        return await super().create_server(*args, **kwargs)


def _new_loop(handshake_timeout: float) -> asyncio.AbstractEventLoop:
    # A worker spawned by --workers starts here, before its app opens the store; in the
    # CLI's own process ``main`` did it already (cdrgate.sqlite_memory).
    sqlite_memory.system_statistics_off()
    loop = _HandshakeBoundedLoop()
    loop.handshake_timeout = handshake_timeout
    return loop


def loop_factory(handshake_timeout: float) -> Callable[[], asyncio.AbstractEventLoop]:
    """What ``uvicorn.run(loop=...)`` takes: a picklable factory (``--workers`` spawns)."""
    return functools.partial(_new_loop, handshake_timeout)
