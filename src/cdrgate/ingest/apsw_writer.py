"""A parallel load's writer in apsw's SQLite (issue 17, sixteenth round).

``parallel.load`` does the writer's part (its half of the file, the copy of the child's rows,
the index builds, the commit) on the store's SQLAlchemy connection, in the system's SQLite
that Python's ``sqlite3`` is linked to (Debian's 3.40.1, built without the lookaside
allocator). The same work in apsw's SQLite (its own, 3.54, lookaside on), as the child already
does its half, costs about a fifth less CPU (bench/RESULTS.md, sixteenth round). So when apsw
is installed this module does it instead, with the same statements: the fast path's INSERT,
``parallel.COPY``, the schema's own CREATE INDEX statements, the cdr_summary SQL.

The store is never open in two SQLite libraries in this process at once: POSIX locks belong to
the process, and closing a descriptor drops every lock the process holds on the file, so one
library closing its descriptor would silently drop the other's locks. This load therefore runs
only when this process has no store connection checked out: its caller closes the pool's
idle ones first (``files.py``), and the pool opens the store again only after the apsw
connection is closed; or the process has no pool yet (``first_load.py``). Another
process may have the store open meanwhile (a server): between processes the locks are the
file's, as between any two versions of SQLite, and the file stays in the stable format (no
statement here uses anything the system's SQLite lacks; tests/ingest/test_apsw_writer.py).

Anything that goes wrong in apsw (a refused row, a store that has rows by the time the write
lock is taken, any SQLite error) rolls the transaction back and raises
:class:`yeastar_sql.Doubt`: the caller then reads the file the Python way, through the pool,
which names the bad line or reports the error as every other write does.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, BinaryIO

from cdrgate import sqlite_memory
from cdrgate.cdr import CdrRecord
from cdrgate.ingest import parallel, part, yeastar_sql
from cdrgate.ingest.formats import Format, row_mapper
from cdrgate.ingest.profile import SourceProfile
from cdrgate.scratch import scratch_folder
from cdrgate.storage import summary_sql
from cdrgate.storage.sqlite_settings import (
    SECONDARY_INDEXES,
    SORTER_SETTINGS,
    SQLITE_BUSY_TIMEOUT_S,
    connection_settings,
)

if part.APSW:
    import apsw

    # The writer runs in the CLI's process; its statistics off before its first connection
    # (a process that has apsw connections open already keeps them: cdrgate.sqlite_memory).
    sqlite_memory.apsw_statistics_off(apsw)

# This module imports no SQLAlchemy: an import into an empty SQLite store runs it before
# opening the store's pool, if it ever does (first_load.py).
if TYPE_CHECKING:
    from cdrgate.storage.db import Database

# The writer's part of the file (parallel.WRITER_SHARE, for a writer in apsw's SQLite): its
# half costs ~0.8 of what it does in the system's SQLite, ~1.15x the child's row rather than
# ~1.4x (bench/RESULTS.md, sixteenth round).
WRITER_SHARE = 0.46


def can_load(db: Database) -> bool:
    """Whether apsw is installed and ``db`` is a SQLite file this process holds no connection
    of in use (its idle pooled ones are closed by ``load``)."""
    return part.APSW and db.sqlite_file is not None and db.none_in_use()


def load(
    path: str,
    stream: BinaryIO,
    size: int,
    profile: SourceProfile,
    helper: parallel.Helper | None,
    progress: Callable[[int], None],
) -> yeastar_sql.Loaded:
    """``parallel.load`` in apsw's SQLite, in a write transaction of its own, committed here:
    the Yeastar file behind ``stream`` (from where it is, to its ``size``) into the empty
    store in the file ``path`` (which no connection of this process may have open: closed
    pool connections, ``can_load``), the second part loaded by ``helper`` (a new one when
    None or used). ``progress`` gets the rows as they are stored. Raises
    :class:`yeastar_sql.Doubt` or :class:`parallel.HelperFailed` when the caller must read
    the file the Python way (nothing is stored then)."""
    mapper = row_mapper(Format.yeastar, profile)
    with (
        scratch_folder("import") as folder,
        parallel.helping(helper) as child,
        _flush_ahead(path) as flush,  # before the connection: its descriptor closes after it
        _write_transaction(path) as conn,
    ):
        if _has_rows(conn):
            raise yeastar_sql.Doubt("the store has rows now")
        table_info = list(conn.execute("PRAGMA table_info(cdr)"))
        cut, scratch, counts = parallel.submit(
            child, stream, size, WRITER_SHARE, profile, table_info, folder
        )
        # As bulk_load: the secondary indexes built once, after the load, in this transaction.
        indexes = list(conn.execute(SECONDARY_INDEXES))
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        store = _Store(conn, progress)
        kinds = yeastar_sql.load(stream, store, mapper, end=cut)
        flush()  # the pages of the writer's part to disk while the child's rows are copied
        rows = child.loaded()
        # As parallel.load: the child adds the writer's counts to its own while the copy runs
        # (none when a chunk of the writer's had to be counted by SQL: see below).
        child.add_to_counts(store.tally if store.exact else {})
        conn.execute(f"ATTACH ? AS {parallel.SCHEMA}", (str(scratch),))
        copied = store.copy(rows)
        kinds.update(child.counted().kinds)
        if store.exact and copied == rows:
            conn.execute(f"ATTACH ? AS {parallel.COUNTS}", (str(counts),))
            conn.execute(summary_sql.add_counted_sql(f"{parallel.COUNTS}.counts"))
        else:
            # A duplicate skipped, a quoted row, an hour before 1970: the store was empty,
            # so every row in it is this load's, and SQL counts them all (as Inserter would
            # count those rows by SQL, this only less often: such files are rare).
            conn.execute(summary_sql.add_every_row_sql())
        # The connection is closed after the commit: no setting needs restoring.
        for setting in SORTER_SETTINGS:
            conn.execute(f"PRAGMA {setting}")
        for _, create in indexes:
            flush()  # the pages written so far (the table's, the last index's) while it builds
            conn.execute(create)
        conn.execute("COMMIT")
    return store.rows, store.inserted, kinds


@contextmanager
def _write_transaction(path: str) -> Iterator[apsw.Connection]:
    """An apsw connection to the store with the pool's settings (its journal mode left as the
    file has it: a rollback journal for a first load, ``journal.rollback_journal``), in BEGIN
    IMMEDIATE; rolled back unless the block committed, and closed. An SQLite error becomes a
    doubt."""
    try:
        conn = apsw.Connection(path)
    except apsw.Error as exc:
        raise yeastar_sql.Doubt(f"apsw: {exc}") from None
    try:
        for setting in connection_settings(SQLITE_BUSY_TIMEOUT_S):
            conn.execute(f"PRAGMA {setting}")
        conn.execute("BEGIN IMMEDIATE")
        yield conn
    except apsw.Error as exc:
        raise yeastar_sql.Doubt(f"apsw: {type(exc).__name__}: {exc}") from None
    finally:
        # Closing with the transaction open rolls it back (an error, Ctrl-C, a doubt).
        conn.close()


@contextmanager
def _flush_ahead(path: str) -> Iterator[Callable[[], None]]:
    """A function that starts writing the store's file to disk (an fsync in a thread of its
    own) unless the last such write is still running. A first load's ~380 MB of pages stay in
    the OS's cache otherwise (it keeps that much dirty for up to 30 s), and the commit's fsync
    writes them all with both cores idle: ~1 s at the bench machine's ~300-400 MB/s. Called
    at each step after the writer's part (the copy, each index build), the writes overlap that
    step, and the commit's fsync is left with the last index's pages (bench/RESULTS.md,
    seventeenth round).

    The descriptor is opened before the load's apsw connection and closed only after it is
    closed (the block is entered first): closing a descriptor of a file drops every POSIX lock
    this process holds on it, which would silently drop the connection's. A failed write is
    not reported here: the kernel reports a write-back error to every descriptor that was open
    when it happened, so the commit's own fsync fails with it and the load rolls back."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise yeastar_sql.Doubt(f"the store's file: {exc}") from None
    running: threading.Thread | None = None

    def flush() -> None:
        nonlocal running
        if running is None or not running.is_alive():
            running = threading.Thread(target=_fsync, args=(descriptor,), name="cdrgate-flush")
            running.start()

    try:
        yield flush
    finally:
        try:
            if running is not None:
                running.join()
        finally:
            os.close(descriptor)


def _fsync(descriptor: int) -> None:
    with contextlib.suppress(OSError):
        os.fsync(descriptor)


def _has_rows(conn: apsw.Connection) -> bool:
    return any(conn.execute("SELECT 1 FROM cdr LIMIT 1"))


class _Store:
    """``yeastar_sql.Sink`` into the store's ``cdr`` on the apsw connection, duplicates
    skipped by the uniqueness key. ``tally`` holds the counts of the chunks it stored whole;
    ``exact`` stays True while that is every row (else cdr_summary is counted by SQL)."""

    def __init__(self, conn: apsw.Connection, progress: Callable[[int], None]) -> None:
        self.conn = conn
        self.progress = progress
        self.rows = self.inserted = 0
        self.tally: summary_sql.Tally = {}
        self.exact = True

    def add(self, record: CdrRecord, ts: int | None = None) -> None:
        """A row of a quoted chunk, parsed by the csv module (rare: counted by SQL)."""
        from cdrgate.storage.cdrs import row_values  # SQLAlchemy's import, for a rare chunk

        self.exact = False
        values = row_values(record, None, ts)
        self.inserted += self._stored(lambda: self.conn.execute(_INSERT, values))
        self.rows += 1
        self.progress(1)

    def add_with(
        self,
        sql: str,
        rows: Sequence[Sequence[object]],
        tally: Callable[[], summary_sql.Tally] | None,
    ) -> summary_sql.Tally | None:
        try:
            new = self._stored(lambda: self.conn.executemany(sql, rows))
        except part.REFUSED as exc:  # a row the SQL refused, or one of the wrong width
            raise yeastar_sql.Doubt(str(exc)) from None
        self.rows += len(rows)
        self.inserted += new
        counts = None if tally is None else tally()
        if counts is not None and new == len(rows) and summary_sql.tally_is_exact(counts):
            summary_sql.merge_tally(self.tally, counts)
        else:
            self.exact = False
        self.progress(len(rows))
        return counts

    def copy(self, rows: int) -> int:
        """The child's ``rows`` rows from its attached scratch table; returns how many were new."""
        new = self._stored(lambda: self.conn.execute(parallel.COPY))
        self.rows += rows
        self.inserted += new
        self.progress(rows)
        return new

    def _stored(self, insert: Callable[[], object]) -> int:
        """How many rows ``insert`` stored (cdr has no trigger: every change is one of its)."""
        before = self.conn.total_changes()
        insert()
        return self.conn.total_changes() - before


# A quoted chunk's row, as Inserter stores it.
_INSERT = f"{part.INSERT} ON CONFLICT (sn, callid) DO NOTHING"
