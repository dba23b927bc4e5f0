"""Seeding an empty SQLite store on two cores: rows made on both while the writer stores them.

One statement runs on one core, and making a chunk's rows (``seeded``'s SELECT) costs several
times what storing them does. So, inside the seed's one write transaction, maker threads
make the next chunks, each on a private in-memory connection, while the writer stores the
chunk before (into the table and its uniqueness key: the caller's ``bulk_load`` builds the
other indexes after the last chunk). Both SQLite libraries let go of the GIL while a
statement runs, so they run at once.

One maker works in the system's SQLite (Python's sqlite3, the writer's) and one in apsw's,
which is a library of its own. SQLite counts its memory under one mutex per library, taken by
every allocation, and making rows allocates for each value (printf, the line): with those
counts on, two makers in one library spent the seed on that mutex (a 1M seed 22.7-23.9 s
against 15.2-17.1 s with one maker, system time 2 -> 9.4 s). cdrgate's processes turn the
counts off where they start (``cdrgate.sqlite_memory``), and then two makers in the system's
SQLite take 9.1-9.5 s against 8.6 s for one in each (apsw's SQLite is the faster at this);
one in each library also keeps them apart in a process where the counts stay on
(bench/RESULTS.md, thirty-second round). Without apsw there is one maker. The apsw maker
opens no file the writer has open: only its chunk files, closed (DETACH) before the writer
attaches them.

A chunk travels as a scratch file: its rows in time order, and beside them their
cdr_summary counts (also made on the maker's core). The writer attaches the file and copies
the rows with one INSERT ... SELECT. Each chunk is a new file, because an attached file read
in a transaction stays attached and locked until that transaction ends (and the writer's
snapshot of it would not see later chunks). SQLite allows 10 attached databases, so a seed
is cut into at most ``MOST_CHUNKS`` chunks. The files hold nothing the store needs: they are
written without a journal or syncs, removed once copied (at most one more than there are
makers exist at once), and a crash leaves the store's transaction to roll back as any other (and its scratch
folder to the next command that makes one: ``cdrgate.scratch``).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from cdrgate import sqlite_memory
from cdrgate.scratch import scratch_folder
from cdrgate.seed import SeedPlan, Slot
from cdrgate.storage import summary
from cdrgate.storage.attached import detach_on_checkin
from cdrgate.storage.cdrs import COLUMNS
from cdrgate.storage.seeded import (
    SQLITE_COUNT_UP,
    SQLITE_STAGE_HOUR,
    SQLITE_STAGING,
    bind_params,
    rows_sql,
)
from cdrgate.storage.summary_sql import count_into_sql

try:
    import apsw

    sqlite_memory.apsw_statistics_off(apsw)  # as the import's writer (ingest/apsw_writer)
    # The SQLite library each maker thread makes its chunks in (above).
    MAKERS: tuple[str, ...] = ("sqlite3", "apsw")
except ImportError:
    MAKERS = ("sqlite3",)

MOST_CHUNKS = 8
_SCHEMA = "seed_chunk"  # the writer attaches chunk i as seed_chunk<i>


def store_empty(
    conn: Connection,
    plan: SeedPlan,
    chunks: Sequence[Sequence[Slot]],
    progress: Callable[[int], None] | None = None,
) -> int:
    """Store the rows of ``chunks`` (consecutive hours, at most ``MOST_CHUNKS``) on ``conn``,
    a SQLite write transaction on an empty ``cdr``; returns how many were new."""
    assert len(chunks) <= MOST_CHUNKS
    detach_on_checkin(conn.engine)
    with scratch_folder("seed") as folder:
        return _store(conn, plan, chunks, folder, progress)


def _store(
    conn: Connection,
    plan: SeedPlan,
    chunks: Sequence[Sequence[Slot]],
    folder: Path,
    progress: Callable[[int], None] | None,
) -> int:
    line = _Line(len(chunks), len(MAKERS))
    makers = [
        threading.Thread(
            target=_make_chunks,
            args=(plan, chunks, folder, line, library),
            name=f"cdrgate-seed-{library}",
        )
        for library in MAKERS
    ]
    for maker in makers:
        maker.start()
    names = ", ".join(COLUMNS)
    inserted = 0
    try:
        for i in range(len(chunks)):
            path, size = line.wait_made(i)
            schema = f"{_SCHEMA}{i}"
            conn.execute(text(f"ATTACH :path AS {schema}"), {"path": str(path)})
            after = summary.newest_id(conn)
            result = conn.exec_driver_sql(
                # "WHERE true": SQLite would read ON CONFLICT as a join's ON without it.
                f"INSERT INTO cdr ({names}) SELECT {names} FROM {schema}.rows WHERE true "
                "ON CONFLICT DO NOTHING"
            )
            new = max(int(result.rowcount), 0)
            if new == size:
                summary.add_counted(conn, f"{schema}.counts")
            else:  # some were stored already: count only those this transaction added
                summary.add_stored(conn, after)
            inserted += new
            with contextlib.suppress(OSError):  # removed at the end anyway
                os.remove(path)
            line.stored_one()
            if progress is not None:
                progress(size)
    finally:
        line.stop()
        for maker in makers:
            maker.join()
    return inserted


class _Line:
    """The chunks between the makers and the writer: which chunk a maker takes next, which
    chunks are made, how far the writer has got, and whether to stop.

    A maker may begin chunk i only while i <= stored + makers: chunk files on disk at once
    are then the one being stored and at most one a maker, made or being made (the makers
    would otherwise fill the disk ahead of the writer). Because the rule depends only on the
    writer's progress, the chunk the writer waits for may always be made: makers taking
    rooms in any other order could hold every room with later chunks."""

    def __init__(self, count: int, makers: int) -> None:
        self.count, self.makers = count, makers
        self.turn = threading.Condition()
        self.taken = 0  # the next chunk a maker takes
        self.stored = 0
        self.made: dict[int, tuple[Path, int]] = {}
        self.failure: BaseException | None = None
        self.stopped = False
        self.working: list[Any] = []  # the makers' open connections

    def take(self) -> int | None:
        """The next chunk for a maker, once there is room for it; None when there is none
        left or the seed stops."""
        with self.turn:
            if self.taken >= self.count:
                return None
            i = self.taken
            self.taken += 1
            self.turn.wait_for(lambda: self.stopped or i <= self.stored + self.makers)
            return None if self.stopped else i

    def put(self, i: int, path: Path, rows: int) -> None:
        with self.turn:
            self.made[i] = (path, rows)
            self.turn.notify_all()

    def fail(self, exc: BaseException) -> None:
        """A maker stopped on ``exc``: the writer raises it instead of waiting on."""
        with self.turn:
            self.failure = self.failure or exc
            self.turn.notify_all()

    def wait_made(self, i: int) -> tuple[Path, int]:
        """Chunk i's file and rows, once made; a maker's failure raised instead."""
        with self.turn:
            self.turn.wait_for(lambda: i in self.made or self.failure is not None)
            if self.failure is not None:
                raise self.failure
            return self.made.pop(i)

    def stored_one(self) -> None:
        with self.turn:
            self.stored += 1
            self.turn.notify_all()

    @contextlib.contextmanager
    def connection(self, library: str) -> Iterator[Any]:
        """A maker's connection (``_connect``), which ``stop`` interrupts while it is open."""
        conn = _connect(library)
        with self.turn:
            self.working.append(conn)
        try:
            yield conn
        finally:
            with self.turn:
                self.working.remove(conn)
            conn.close()

    def stop(self) -> None:
        """No more chunks: a maker's running statement is interrupted (a chunk takes
        seconds to make, and the writer waits for its makers to end: a Ctrl-C or an
        error would otherwise wait for it), and no maker takes another."""
        with self.turn:
            self.stopped = True
            for conn in self.working:
                conn.interrupt()
            self.turn.notify_all()


def _connect(library: str) -> Any:
    """A private in-memory connection in ``library`` (sqlite3 and apsw connections both
    take ``execute(sql, params)`` and ``executemany`` as the maker uses them)."""
    if library == "apsw":
        return apsw.Connection(":memory:")
    return sqlite3.connect(":memory:", isolation_level=None)


def _make_chunks(
    plan: SeedPlan, chunks: Sequence[Sequence[Slot]], folder: Path, line: _Line, library: str
) -> None:
    """A maker thread: the next chunk's file, until none is left or the seed stops."""
    try:
        with line.connection(library) as conn:
            hours = [hour for chunk in chunks for hour in chunk]
            for sql in SQLITE_STAGING:
                conn.execute(sql)
            conn.executemany(SQLITE_STAGE_HOUR, [vars(hour) for hour in hours])
            conn.execute(SQLITE_COUNT_UP, {"n": max(hour.calls for hour in hours)})
            names = ", ".join(COLUMNS)
            make = (
                f"CREATE TABLE out.rows AS SELECT {names} "
                f"FROM ({rows_sql('sqlite', plan)}) AS seeded"
            )
            while (i := line.take()) is not None:
                chunk = chunks[i]
                path = folder / f"chunk{i}.db"
                conn.execute("ATTACH ? AS out", (str(path),))
                conn.execute("PRAGMA out.journal_mode = OFF")
                conn.execute("PRAGMA out.synchronous = OFF")
                conn.execute(make, bind_params(plan, chunk[0].first_seq, chunk[-1].first_seq))
                conn.execute(count_into_sql("out.rows", "out.counts"))
                conn.execute("DETACH out")
                line.put(i, path, sum(hour.calls for hour in chunk))
    except BaseException as exc:  # the writer waits for a chunk: it must hear of it
        line.fail(exc)
