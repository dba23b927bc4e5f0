"""A response's head written with its first body bytes: one send for a small answer.

uvicorn's ``RequestResponseCycle.send`` writes the status line and headers to the transport on
``http.response.start`` and the body on each ``http.response.body``: two ``send()`` system
calls for every answer, where the head alone is ~200 bytes. On loopback the first of them also
wakes the client for bytes it cannot use yet. :class:`HeadWithBody` is the transport as a
request's cycle sees it (``LenientHttpToolsProtocol`` hands it to each cycle): it holds the
head and writes it with the next body bytes in one ``writelines``. An answer sent as two
messages in one step of its task (every envelope, a small download) leaves in one write.

The head is never held past the turn of the event loop it was sent in: a response whose body
comes later (a large export reads its first page in a thread first) has its head written at
the end of that turn, alone, as before. A head held when the cycle closes the connection is
written first: an answer without body bytes (uvicorn writes none for HEAD) ends with the close
on a connection not kept alive (HTTP/1.0, ``Connection: close``). A head answering a request
whose body is still arriving says ``connection: close`` (``_closing``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from uvicorn.protocols.http.httptools_impl import RequestResponseCycle


class HeadWithBody:
    """The three transport methods a cycle calls (``write``, ``close``, ``is_closing``), on one
    connection's transport, for one cycle at a time (``answering``)."""

    __slots__ = ("_close", "_cycle", "_head_written", "_held", "_loop", "_transport")

    def __init__(
        self,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        close: Callable[[], None],
    ) -> None:
        """``close``: how the connection ends when a cycle closes it after its answer."""
        self._transport = transport
        self._loop = loop
        self._close = close
        self._cycle: RequestResponseCycle | None = None
        self._head_written = False
        self._held: bytes | None = None

    def answering(self, cycle: RequestResponseCycle) -> None:
        """``cycle``'s writes come next (a connection answers its requests one at a time)."""
        self._cycle = cycle
        self._head_written = False

    def write(self, data: bytes) -> None:
        cycle = self._cycle
        # The head is the cycle's first write once its response has started; a write before
        # it (``100 Continue``) is not held.
        if not self._head_written and cycle is not None and cycle.response_started:
            self._head_written = True
            if cycle.more_body and cycle.keep_alive:
                data = _closing(cycle, data)
            self._held = data
            self._loop.call_soon(self._write_held)
            return
        held = self._held
        if held is None:
            self._transport.write(data)
        else:
            self._held = None
            self._transport.writelines((held, data))

    def _write_held(self) -> None:
        """The end of the turn the head was sent in: no body came with it."""
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)  # the close sends what is buffered first
        self._close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()


def _closing(cycle: RequestResponseCycle, head: bytes) -> bytes:
    """``head`` saying ``connection: close``, for a request answered before its body was whole.

    The connection ends after this answer (what still arrives is read and dropped: the
    protocol's lingering close), so the head must say so, as nginx's does: a client told
    nothing reuses the connection for its next request and finds it closed ("server
    disconnected without sending a response"). A handler answers before reading the body
    when the body is larger than the API accepts, or a scripted fault answers an errno;
    a client whose body's last packet is slower than the answer meets it."""
    cycle.keep_alive = False  # uvicorn's cycle then closes the connection after the answer
    return head[:-2] + b"connection: close\r\n\r\n"
