"""Sending a download to a client that may vanish, stall or read slowly.

Starlette's ``StreamingResponse`` over a sync iterator leaves the iterator's cleanup to the
garbage collector when the client disconnects, at an unknown time and sometimes on the event
loop thread. Here the response drives the export itself:

- each page is read in a worker thread, at most ``PAGE_THREADS`` at a time for all
  downloads (the query API's CSV pages: ``QUERY_PAGE_THREADS`` of their own), so exports
  never take the threads (and pooled connections) that logins, randoms, audit and ingest
  need; while the client keeps up (no send of the last page had to wait longer than
  ``SEND_WAIT``), a CDR export reads its next page while the current one is being sent (so
  one export holds at most two pages) and its pages grow; once a send waits, the page read
  ahead is dropped and the export goes on a small page at a time, each read after the last
  is handed over, until a page is sent without waiting again;
- a task watches ``receive()`` for the disconnect, and cancels the stream at once;
- a client reading slower than ``download_min_rate`` bytes/s over ``download_rate_window``
  seconds is cut (a send blocked that long counts as no progress); a page is sent in pieces
  of at most ``SEND_BYTES``, so a first page (up to ~0.5 MB) does not lengthen how long one
  blocked send may last;
- a page that cannot be read (the database went away, a recording file shrank) ends the
  transfer unterminated;
- however it ends, ``Export.finish`` runs exactly once, in a worker thread, shielded from
  cancellation, with the outcome (ok, aborted, cut, failed) and the bytes sent; on the event
  loop when it has no database work to do (a small download sent whole, already audited).

A small download already audited, whose whole body is in memory and at most
``WHOLE_SEND_BYTES``, is sent in two messages with no task group: the transport takes it
without waiting, so there is no moment at which a disconnect could be seen, nor a slow reader.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Protocol

import anyio
import anyio.abc
from anyio.to_thread import run_sync
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from cdrgate import metrics
from cdrgate.errors import SourceBroken, StorageUnavailable
from cdrgate.services.export import Export, Outcome
from cdrgate.settings import Settings
from cdrgate.storage.db import QUERY_READS

log = logging.getLogger("cdrgate.downloads")

# Concurrent page reads of all downloads together. Each holds a thread and a pooled
# connection for one short query; 2 cores gain nothing from more.
PAGE_THREADS = 4
# The most one send hands to the transport: about a page of the first size (1,000 rows), so a
# stalled client is cut after the window plus the drain time of this much, whatever the page.
SEND_BYTES = 128 * 1024
# asyncio's transports take this much without pausing the writer (their default high-water
# mark): a body this small is handed over whole, with no await that could wait for the client.
WHOLE_SEND_BYTES = 64 * 1024
# A send that blocked longer than this waited for the client (transport flow control), not
# for the event loop: well above a loopback send of a piece to a reader that keeps up (well
# under 1 ms), so a busy machine does not make a fast reader look slow, and well under the
# seconds a stalled one takes.
SEND_WAIT = 0.05
# How a download the server cancelled (at its drain deadline) ends, whether it was cut
# mid-send or before its first byte (``finish_unsent``).
CANCELLED: Outcome = "cut"
# The JSON query API's CSV pages are read in threads of their own, as many as its share of
# the downloads' pool (``db.QUERY_READS``): such a page waits in its thread for that share,
# which the query API's long reads may hold, and must not hold one of ``PAGE_THREADS``
# meanwhile (the downloads' pages would wait behind it; twenty-fourth round).
QUERY_PAGE_THREADS = QUERY_READS
# One limiter of each per event loop: an anyio limiter belongs to the loop it first runs on,
# and a process may run several (tests, an in-process server beside a client).
_limiters: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[bool, anyio.CapacityLimiter]
] = weakref.WeakKeyDictionary()


def _page_threads(query: bool = False) -> anyio.CapacityLimiter:
    """The downloads' page threads (a recording's too), or (``query``) the query API's."""
    loop = asyncio.get_running_loop()
    limiters = _limiters.get(loop)
    if limiters is None:
        limiters = _limiters[loop] = {
            False: anyio.CapacityLimiter(PAGE_THREADS),
            True: anyio.CapacityLimiter(QUERY_PAGE_THREADS),
        }
    return limiters[query]


class TooSlow(Exception):
    """The client read less than the minimum rate over a whole window."""


class RateGuard:
    """Bytes delivered per window of ``window`` seconds must reach ``min_rate * window``."""

    def __init__(self, min_rate: int, window: int) -> None:
        self.min_rate = min_rate
        self.window = window
        self._started = time.monotonic()
        self._sent = 0

    @property
    def active(self) -> bool:
        return self.min_rate > 0 and self.window > 0

    def sent(self, size: int) -> None:
        if not self.active:
            return
        self._sent += size
        elapsed = time.monotonic() - self._started
        if elapsed >= self.window:
            if self._sent < self.min_rate * elapsed:
                raise TooSlow(f"{self._sent} bytes in {elapsed:.0f} s")
            self._started, self._sent = time.monotonic(), 0

    def deadline(self, size: int) -> float:
        """How long sending ``size`` bytes may block: a window, plus the time a client at the
        minimum rate needs to drain it and the chunk still buffered before it."""
        return self.window + 2 * size / self.min_rate if self.active else float("inf")


class Streamed(Protocol):
    """What ExportResponse sends: a CDR :class:`Export`, or a recording file."""

    @property
    def ready(self) -> bool: ...

    def next_chunk(self) -> bytes | None: ...

    def none_sent(self) -> None:
        """No byte of the body will be sent (a HEAD): none counts as sent, or as missing."""

    def finish(self, outcome: Outcome) -> None: ...


class ExportResponse(Response):
    """Streams an :class:`Export` (chunked; HTTP/1.0 clients: see ``Http10Compat``), or any
    :class:`Streamed` body (a recording: Content-Length given, status 200 or 206)."""

    def __init__(
        self, export: Export | Streamed,
        headers: Mapping[str, str] | Sequence[tuple[bytes, bytes]], settings: Settings,
        status_code: int = 200, *, query_pages: bool = False,
    ) -> None:  # fmt: skip
        """``headers``: a mapping, or the headers already encoded (lower-case names).
        ``query_pages``: the query API's CSV, its pages read in its own threads
        (``QUERY_PAGE_THREADS``)."""
        self.query_pages = query_pages
        self.status_code = status_code
        self.background = None
        self.export = export
        if isinstance(headers, Mapping):
            self.init_headers(headers)
        else:
            self.raw_headers = list(headers)
        self.min_rate = settings.download_min_rate
        self.window = settings.download_rate_window

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        export = self.export
        if scope.get("method") == "HEAD":
            await self._send_head(send)
            return
        # Every transfer, whatever sends it (CDR downloads, recordings, the query API's and
        # the console's CSV), as the export slots count them.
        metrics.EXPORTS_IN_PROGRESS.inc()
        try:
            await self._send(export, send, receive)
        finally:
            metrics.EXPORTS_IN_PROGRESS.dec()

    async def _send(self, export: Export | Streamed, send: Send, receive: Receive) -> None:
        first = None
        if isinstance(export, Export) and export.recorded:
            first = export.next_chunk()  # in memory: the whole body
            if first is not None and len(first) <= WHOLE_SEND_BYTES:
                await self._send_whole(send, first, export)
                return
        outcome: Outcome = "aborted"
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(_cancel_on_disconnect, receive, group.cancel_scope)
                outcome = await self._stream(send, group, first)
                group.cancel_scope.cancel()
        except anyio.get_cancelled_exc_class():
            # Not the client leaving (that cancel stays inside the group): the server is
            # stopping and its drain deadline has passed.
            outcome = CANCELLED
            raise
        finally:
            if outcome == "ok" and isinstance(self.export, Export) and self.export.recorded:
                self.export.finish(outcome)  # no database work: no thread hop
            else:
                await _finish(self.export, outcome)

    async def _send_head(self, send: Send) -> None:
        """A HEAD (Starlette routes one to every GET route): the head a GET would have, and no
        body. Nothing is read (uvicorn drops a HEAD's body bytes: a whole CSV export or
        recording file would be read to be thrown away) and nothing counts as sent."""
        outcome: Outcome = "aborted"
        self.export.none_sent()
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code,
                 "headers": self.raw_headers}
            )  # fmt: skip
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            outcome = "ok"
        except asyncio.CancelledError:
            outcome = CANCELLED
            raise
        finally:
            await _finish(self.export, outcome)

    async def _send_whole(self, send: Send, body: bytes, export: Export) -> None:
        outcome: Outcome = "aborted"
        handed = False  # the body given to the connection (counted as sent from then on)
        try:
            # The deadline every send has: the transport takes such a body at once unless
            # earlier responses on this connection (pipelined, never read) fill its buffer,
            # and then this send would wait for ever. asyncio's own timeout: one timer handle,
            # where anyio's cancel scope cost a small flow ~30 us (bench/RESULTS.md, eighth
            # round); it raises the same TimeoutError.
            deadline = RateGuard(self.min_rate, self.window).deadline(len(body))
            async with asyncio.timeout(deadline if deadline != float("inf") else None):
                await send(
                    {"type": "http.response.start", "status": self.status_code,
                     "headers": self.raw_headers}
                )  # fmt: skip
                handed = True
                await send({"type": "http.response.body", "body": body, "more_body": False})
            outcome = "ok"
        except TimeoutError:
            log.warning("download cut, connection closed: client reads too slowly (no progress)")
            outcome = "cut"
        except asyncio.CancelledError:
            # asyncio.timeout turns only its own cancel into TimeoutError: this one is the
            # server's drain deadline, a cut as in ``__call__``.
            outcome = CANCELLED
            raise
        finally:
            if outcome == "ok":
                export.finish(outcome)  # recorded as ok already: no database work
            else:
                if not handed:
                    export.none_sent()
                await _finish(export, outcome)

    async def _stream(
        self, send: Send, group: anyio.abc.TaskGroup, first: bytes | None = None
    ) -> Outcome:
        guard = RateGuard(self.min_rate, self.window)
        chunk: bytes | None
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        # Until a page was sent without waiting, the client is not known to keep up: a client
        # that stalls from the start never makes the export read ahead.
        keeping_up = False
        try:
            while True:
                if first is not None:  # taken already by __call__
                    chunk, first = first, None
                elif self.export.ready:  # in memory already: no thread hop
                    chunk = self.export.next_chunk()
                else:
                    chunk = await run_sync(
                        self.export.next_chunk, limiter=_page_threads(self.query_pages)
                    )
                if chunk is None:
                    break
                read = self._read_ahead(group, keeping_up)
                keeping_up = True
                for at in range(0, len(chunk), SEND_BYTES):
                    piece = chunk[at : at + SEND_BYTES] if len(chunk) > SEND_BYTES else chunk
                    started = time.monotonic()
                    with anyio.fail_after(guard.deadline(len(piece))):
                        await send({"type": "http.response.body", "body": piece, "more_body": True})
                    if time.monotonic() - started > SEND_WAIT:
                        keeping_up = False
                    guard.sent(len(piece))
                # The next chunk is handed out only once its read has ended: the export is
                # used by one thread at a time, and no read is left behind for finish.
                await read.wait()
                if not keeping_up and isinstance(self.export, Export):
                    self.export.fell_behind()
                    log.debug("download: a send waited for the client; next page small")
        except (TooSlow, TimeoutError) as exc:
            why = str(exc) if isinstance(exc, TooSlow) else "no progress"
            log.warning("download cut, connection closed: client reads too slowly (%s)", why)
            # Returning without the final chunk makes the server close the connection: the
            # client sees a truncated transfer, never a short file that looks complete.
            return "cut"
        except StorageUnavailable as exc:
            log.error("download broken off: storage unavailable: %s", exc)
            return "failed"
        except SourceBroken as exc:
            log.error("download broken off: %s", exc)
            return "failed"
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return "ok"

    def _read_ahead(self, group: anyio.abc.TaskGroup, keeping_up: bool) -> anyio.Event:
        """Start reading the export's next page in a worker thread if the client keeps up;
        the event is set when the read has ended (at once when there is nothing to read)."""
        done = anyio.Event()
        export = self.export
        if not keeping_up or not isinstance(export, Export) or export.ready:
            done.set()
            return done

        async def read() -> None:
            try:
                await run_sync(export.read_ahead, limiter=_page_threads())
            finally:
                done.set()

        group.start_soon(read)
        return done


async def finish_unsent(export: Streamed | None) -> None:
    """An export whose request was cancelled before its response began (the server's drain
    deadline: uvicorn cancels a request no other way), so not a byte of it was sent: finished
    as a stream that cancel cuts is (``CANCELLED``, nothing sent), which releases its slot and
    makes its audit record say so (a small download's, written ``ok`` with its spend, is
    corrected). For ``api/threads``'s ``if_cancelled``; None: no export was made."""
    if export is not None:
        await _finish(export, CANCELLED)


async def _finish(export: Streamed, outcome: Outcome) -> None:
    """``export.finish(outcome)`` in a worker thread (it may write the audit record), to its
    end whatever cancels the request meanwhile."""
    with anyio.CancelScope(shield=True):
        await run_sync(export.finish, outcome)


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return
