"""A redeemed CDR download, read in short pages, and the limits on how many run at once.

A download used to hold one read transaction (and a pooled connection) for as long as the
client took to read it: a day for a full export at 1 KB/s, and a few dozen slow readers
emptied the pool for every other request. An export now reads its range in consecutive time
slices, each in its own short read transaction, and holds nothing in the database between
them. A slice is whole seconds ``[lo, hi]``, so no key tie-break is needed and each query is
one range scan of the ``(ts, callid, sn)`` or ``(callfrom|callto, ts)`` index; its width adapts
so a page holds about the rows it aims at, and a slice that holds more than a page is cut
after its last whole second that fits. A single second holding more than a page (hundreds
of PBXs aggregated, or a bulk import with one timestart) is read in (callid, sn) key order.

Between pages the export sees new commits: a CDR stored meanwhile in a slice not read yet is
included, one stored in a slice already sent is not (as if the download had started a
moment earlier). No row is sent twice and none that existed throughout is missed.

A long export's pages grow while its client keeps up: the first aims at ``PAGE_ROWS`` (a
small download's whole result), each next one at twice the last, up to ``grown_rows``
(8,000 rows, ~1 MB, on SQLite; 2,000 on PostgreSQL, where reading a page costs more
memory), and the next page is read while one is sent. A full export of 1M rows on SQLite
is then about 160 pages instead of 900. When the client makes a send wait
(``fell_behind``), the page read ahead is dropped and the next is read at the first size,
only once the current one is handed over: larger pages gain nothing when the client is the
bottleneck, and a stalled or slow client holds about one small page, not two large ones.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Literal

from cdrgate.cdr import CSV_HEADER_BYTES
from cdrgate.csvsafe import safe_line
from cdrgate.errors import ApiError, Errno, StorageUnavailable
from cdrgate.storage import cdrs
from cdrgate.storage.cdrs import CdrQuery, Key
from cdrgate.storage.db import Database

Outcome = Literal["ok", "aborted", "cut", "failed"]  # failed: storage broke mid-stream

PAGE_ROWS = 1000  # the first page's aim
MAX_PAGE_ROWS = 4 * PAGE_ROWS  # the first page holds at most this many rows, a later one its aim
MAX_GROWTH = 8  # a slice grows or shrinks at most this factor per page
GROWN_PAGE = 8  # a long export's pages grow up to this many times PAGE_ROWS (SQLite)
# On PostgreSQL libpq holds a page's whole result beside its Python rows (and each line is a
# str encoded once more): a page read costs about three times what it does on SQLite, and a
# large export's growth stays within its tested bound (4 MB) with 2,000-row pages only
# (4,000: 3.9-4.9 MB; 8,000: 5.3-6.7 MB; bench/RESULTS.md).
GROWN_PAGE_POSTGRES = 2


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: second ``ts``, a slice ``span`` seconds wide.

    ``dense``: second ``ts`` alone holds more than a page, so it is read in key order
    (callid, sn) a page at a time, from after ``after``. ``aim``: the rows this page aims
    at (0: ``PAGE_ROWS``, read when the page is, so tests can shrink it).
    """

    ts: int
    span: int
    dense: bool = False
    after: Key | None = None
    aim: int = 0


@dataclass(frozen=True)
class Page:
    """``rows`` CSV lines, joined and UTF-8 encoded in ``body`` (header not included)."""

    query: CdrQuery
    rows: int
    body: bytes
    next: Cursor

    @property
    def empty(self) -> bool:
        return not self.rows

    @classmethod
    def of_lines(cls, query: CdrQuery, lines: list[str], next: Cursor, safe: bool) -> Page:
        if safe:
            lines = [safe_line(line) for line in lines]
        return cls(query, len(lines), "".join(lines).encode(), next)

    @classmethod
    def of_read(cls, query: CdrQuery, lines: cdrs.Lines, next: Cursor, safe: bool) -> Page:
        if lines.each is not None:  # read one by one: the cells must be inspected as text
            return cls.of_lines(query, [line.decode() for line in lines.each], next, safe)
        return cls(query, lines.rows, lines.body, next)

    @property
    def last(self) -> bool:
        return self.next.ts > self.query.end_ts


def _next_span(span: int, rows: int, aim: int) -> int:
    if rows == 0:
        return span * MAX_GROWTH
    wanted = span * aim // rows
    return max(1, min(span * MAX_GROWTH, max(span // MAX_GROWTH, wanted)))


def grown_rows(db: Database) -> int:
    """The most rows a long export's page grows to on ``db``'s engine."""
    return (GROWN_PAGE if db.is_sqlite else GROWN_PAGE_POSTGRES) * PAGE_ROWS


def _grown(aim: int, db: Database) -> int:
    return min(2 * aim, grown_rows(db))


def read_page(db: Database, query: CdrQuery, at: Cursor, safe: bool) -> Page:
    """The next non-empty page from ``at`` on (or an empty page at the end of the range).

    Each query is its own short read transaction; empty slices widen quickly, so a sparse
    range costs a handful of queries.
    """
    aim = at.aim or PAGE_ROWS
    while at.ts <= query.end_ts:
        if at.dense:
            second = replace(query, start_ts=at.ts, end_ts=at.ts)
            keyed = db.export_read(
                partial(cdrs.read_keyed_lines, query=second, after=at.after, limit=aim)
            )
            if len(keyed) < aim:
                at = Cursor(at.ts + 1, 1, aim=aim)
            else:
                at = Cursor(at.ts, 1, dense=True, after=(keyed[-1][1], keyed[-1][2]), aim=aim)
            page = Page.of_lines(query, [line for line, _, _ in keyed], at, safe)
        else:
            hi = min(query.end_ts, at.ts + at.span - 1)
            where = replace(query, start_ts=at.ts, end_ts=hi)
            most = MAX_PAGE_ROWS if aim == PAGE_ROWS else aim
            read = partial(cdrs.read_whole_seconds, query=where, most=most, each=safe)
            lines, cut = db.export_read(read)
            if cut is not None:
                if not lines.rows:  # second ``cut`` alone holds more than a page
                    at = Cursor(cut, 1, dense=True, aim=aim)
                    continue
                hi = cut - 1
            at = Cursor(hi + 1, _next_span(hi - at.ts + 1, lines.rows, _grown(aim, db)), aim=aim)
            page = Page.of_read(query, lines, at, safe)
        if not page.empty:
            return replace(page, next=replace(at, aim=_grown(aim, db)))
    return Page(query, 0, b"", at)


def first_page(db: Database, query: CdrQuery, safe: bool) -> Page:
    """The first page, trying the whole range at once: most downloads (one extension, a day)
    fit in one page, and a range that does not gives its first whole seconds that fit."""
    return read_page(db, query, Cursor(query.start_ts, query.end_ts - query.start_ts + 1), safe)


Finish = Callable[[Outcome, int, int], None]


class Export:
    """The CSV of one download as byte chunks: the header and first page, then a page a call.

    ``next_chunk``, ``read_ahead`` and ``finish`` do database work: call them off the event
    loop, one at a time. ``finish`` must be called once however the response ends (later calls
    do nothing); it releases the download's slot and writes its audit record.
    """

    def __init__(
        self, db: Database, first: Page, filename: str, safe: bool, on_finish: Finish,
        *, recorded: bool = False,
    ) -> None:  # fmt: skip
        # recorded: the audit already says "ok", so finishing "ok" does no database work.
        self.recorded = recorded
        self.db = db
        self.filename = filename
        self._ahead: Page | None = first  # read, not handed out yet
        self._ahead_error: StorageUnavailable | None = None
        self._header = True
        self._cursor = first  # where the next page starts
        self._safe = safe
        self._on_finish: Finish | None = on_finish
        self.rows = 0
        self.bytes = 0

    @property
    def ready(self) -> bool:
        """The next chunk needs no database work (read ahead already, or the end)."""
        return self._ahead is not None or self._ahead_error is not None or self._cursor.last

    def read_ahead(self) -> None:
        """Read the next page now, so ``next_chunk`` hands it out without a query: called
        while the previous chunk is being sent. A storage failure is kept for ``next_chunk``
        to raise, in the order the client would have met it."""
        if self.ready:
            return
        try:
            self._ahead = read_page(self.db, self._cursor.query, self._cursor.next, self._safe)
        except StorageUnavailable as exc:
            self._ahead_error = exc

    def fell_behind(self) -> None:
        """The client made a send of the page just handed out wait: drop the page read ahead
        (not counted: never handed out) and read the next at the first page size. No database
        work; call it once the read ahead has ended. A failed read ahead is kept (raised
        with the next chunk, as before)."""
        if self._header:  # nothing handed out yet: the page held is the first, not read ahead
            return
        self._ahead = None
        at = self._cursor.next
        if at.dense:  # one second in key order: its position is the key, not a span
            self._cursor = replace(self._cursor, next=replace(at, aim=PAGE_ROWS))
            return
        # A span sized for a grown page, narrowed in proportion (the first size is the aim).
        span = max(1, at.span * PAGE_ROWS // max(at.aim, PAGE_ROWS))
        self._cursor = replace(self._cursor, next=replace(at, span=span, aim=PAGE_ROWS))

    def next_chunk(self) -> bytes | None:
        """The next bytes of the CSV, or None at the end. Counted (rows, bytes) as sent: the
        caller hands each chunk to the client before asking for the next."""
        self.read_ahead()  # nothing to do when read ahead already (or failed)
        if self._ahead_error is not None:  # raised here, never taken for the end
            raise self._ahead_error
        page, self._ahead = self._ahead, None
        if page is None:
            return None
        # Where the next page starts, without the body (sent): built directly, as
        # dataclasses.replace looks the fields up again on every call.
        self._cursor = Page(page.query, page.rows, b"", page.next)
        if page.empty and not self._header:
            return None
        chunk = page.body
        if self._header:
            chunk, self._header = CSV_HEADER_BYTES + chunk, False
        self.rows += page.rows
        self.bytes += len(chunk)
        return chunk

    def none_sent(self) -> None:
        """The whole body, handed out as one chunk, never reached the connection (its send
        had not begun): nothing counted as sent."""
        self.rows = self.bytes = 0

    def finish(self, outcome: Outcome) -> None:
        on_finish, self._on_finish = self._on_finish, None
        if on_finish is not None:
            on_finish(outcome, self.rows, self.bytes)


class ExportSlots:
    """How many multi-page exports may run at once in this process: overall and per account.

    Exports pin no database connection between pages, but each still reads page after page
    and holds a page of memory for as long as its client takes; the limits keep one account
    (or a crowd of slow readers) from taking the capacity every other client needs. A download
    whose whole result fits in its first page needs no slot. Refused: errno 20010.
    """

    class Slot:
        def __init__(self, release: Callable[[], None]) -> None:
            self._release: Callable[[], None] | None = release

        def release(self) -> None:
            release, self._release = self._release, None
            if release is not None:
                release()

    def __init__(self, overall: int, per_account: int) -> None:
        self.overall = overall
        self.per_account = per_account
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}

    @property
    def in_use(self) -> int:
        with self._lock:
            return sum(self._running.values())

    def acquire(self, account: str) -> ExportSlots.Slot:
        with self._lock:
            mine = self._running.get(account, 0)
            if (self.overall and sum(self._running.values()) >= self.overall) or (
                self.per_account and mine >= self.per_account
            ):
                raise ApiError(Errno.SERVER_BUSY, "too many downloads in progress")
            self._running[account] = mine + 1
        return ExportSlots.Slot(lambda: self._release(account))

    def _release(self, account: str) -> None:
        with self._lock:
            left = self._running.get(account, 0) - 1
            if left > 0:
                self._running[account] = left
            else:
                self._running.pop(account, None)
