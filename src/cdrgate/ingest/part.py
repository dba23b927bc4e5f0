"""The child process of a parallel load (ingest/parallel.py): its part of the file into a
scratch table, then that part's cdr_summary counts, with the writer's own (its tally) added.

Its start-up is on the import's critical path (the writer waits for its rows), so this
module, and what it imports, stay clear of SQLAlchemy and the CLI: a spawned child imports
the module of its target and, run from the ``cdrgate`` script, that script's ``cdrgate.cli``
(whose commands are imported only when run). It needs the fast path's code and SQLite.

Its SQLite is apsw's when apsw is installed (a dependency; the standard library's sqlite3
when it cannot be imported): the same INSERT of the fast path costs the child ~28 % less CPU
there than in the system's SQLite that the stdlib is linked to (bench/RESULTS.md, thirteenth
round). The child opens only files of its own (the scratch and counts files); the store is
never open in two SQLite libraries in one process at once, which would clash on POSIX locks
(the writer's side in apsw closes the pool's connections first: ingest/apsw_writer.py). The
writer attaches the scratch file once the child has closed it, and the counts file once it is
written; between two processes each library's locks are the file's own, so the child
reading the scratch file while the writer reads it too is as safe as with one library. The files are in SQLite's stable format (a plain table, no feature newer than
the writer's SQLite), which every version reads.
"""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from typing import TYPE_CHECKING, Any, Protocol

from cdrgate import sqlite_memory
from cdrgate.cdr import CdrRecord
from cdrgate.ingest import yeastar_sql
from cdrgate.ingest.formats import Format, row_mapper
from cdrgate.ingest.profile import SourceProfile
from cdrgate.storage.columns import COLUMNS

if TYPE_CHECKING:
    from cdrgate.storage.summary import Tally

try:
    import apsw

    APSW = True
except ImportError:  # not installed: the standard library's SQLite does it all
    APSW = False

# What a refused row raises: a NULL ts (the NOT NULL column) or a row not 14 fields wide (the
# binding count), in each library.
REFUSED: tuple[type[Exception], ...] = (sqlite3.IntegrityError, sqlite3.ProgrammingError)
if APSW:
    REFUSED = (*REFUSED, apsw.ConstraintError, apsw.BindingsError)


class _Connection(Protocol):
    """What the child uses of a connection, the same in apsw and sqlite3."""

    def execute(self, sql: str, bindings: Sequence[Any] = ..., /) -> Iterable[Any]: ...

    def executemany(self, sql: str, bindings: Iterable[Sequence[Any]], /) -> object: ...

    def close(self) -> object: ...


def open_file(path: str) -> _Connection:
    """A connection to one of the child's own files, in apsw when it is installed. Neither
    library opens a transaction by itself here: the child says BEGIN where it wants one."""
    if APSW:
        return apsw.Connection(path)
    return sqlite3.connect(path, isolation_level=None)


INSERT = f"INSERT INTO cdr ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
_KINDS = "SELECT type, status, sum(calls) FROM counts.counts GROUP BY type, status"


@dataclass(frozen=True)
class Job:
    """What the child loads: bytes [start, end) of ``path`` into ``scratch``, a new file
    whose table ``cdr`` has ``columns`` (name, declared type, NOT NULL) and no index; then
    the counts of those rows into the new file ``counts``, by ``count_sql`` (a CREATE TABLE
    counts.counts AS SELECT ... FROM cdr: ``summary.count_into_sql``), and the writer's
    tally's rows added to them by ``tally_sql`` (``summary.tally_into_sql``)."""

    path: str
    start: int
    end: int
    scratch: str
    counts: str
    count_sql: str
    tally_sql: str
    columns: tuple[tuple[str, str, bool], ...]
    profile: SourceProfile
    chunk_bytes: int


@dataclass(frozen=True)
class Loaded:
    """The child's first answer: its rows are in the scratch table."""

    rows: int


@dataclass(frozen=True)
class Counted:
    """The child's second answer: the counts are in their table; the rows per (type, status)
    of the child's part (the writer's tally left out)."""

    kinds: dict[tuple[str, str], int]


def serve(pipe: Pipe) -> None:
    """The child: one job, its two answers (or one naming the doubt or error), then exit.
    Between the two it receives the writer's tally's rows (``summary.tally_rows``): sent only
    once the first answer is in, so neither side ever waits on a pipe the other has stopped
    reading. Ctrl-C is the parent's to handle (it then terminates this process), so it is
    ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sqlite_memory.statistics_off()  # a new process, no connection open yet
    job = pipe.recv()
    if job is None:
        return
    steps: tuple[Callable[[], object], ...] = (
        lambda: _load(job),
        lambda: _count(job, pipe.recv()),
    )
    for step in steps:
        try:
            answer: tuple[str, object] = ("ok", step())
        except yeastar_sql.Doubt as exc:
            answer = ("doubt", str(exc))
        except Exception as exc:  # the parent rolls back and reads the file the Python way
            answer = ("error", f"{type(exc).__name__}: {exc}")
        pipe.send(answer)
        if answer[0] != "ok":
            break
    pipe.close()


def _load(job: Job) -> Loaded:
    conn = _connect(job.scratch)
    try:
        create_table(conn, job.columns)
        conn.execute("BEGIN")
        scratch = Scratch(conn)
        with open(job.path, "rb") as stream:
            stream.seek(job.start)
            yeastar_sql.load(
                stream,
                scratch,
                row_mapper(Format.yeastar, job.profile),
                end=job.end,
                sql=yeastar_sql.ROWS_SQL,
                chunk_bytes=job.chunk_bytes,
            )
        conn.execute("COMMIT")
        return Loaded(scratch.rows)
    finally:
        conn.close()


def create_table(conn: _Connection, columns: Sequence[tuple[str, str, bool]]) -> None:
    """The scratch table ``cdr`` with ``columns`` (name, declared type, NOT NULL), no index."""
    spelled = ", ".join(
        f'"{name}" {kind} NOT NULL' if not_null else f'"{name}" {kind}'
        for name, kind, not_null in columns
    )
    conn.execute(f"CREATE TABLE cdr ({spelled})")


def _count(job: Job, tally: Sequence[Sequence[object]]) -> Counted:
    """The part's counts, by one GROUP BY in SQL while the writer copies its rows (both only
    read the scratch file), and the writer's ``tally`` rows after them, written to a file of
    their own for the writer to attach: one INSERT ... SELECT then adds them all to
    cdr_summary, and the writer has no upsert of its own tally to run."""
    # Not _connect: the writer may have the scratch file attached already, and changing its
    # journal mode would wait for the writer's lock (the driver's 5 s timeout) to no avail.
    conn = open_file(job.scratch)
    try:
        conn.execute("ATTACH ? AS counts", (job.counts,))
        conn.execute("PRAGMA counts.journal_mode = OFF")
        conn.execute("PRAGMA counts.synchronous = OFF")
        conn.execute(job.count_sql)
        kinds = {(type_, status): int(calls) for type_, status, calls in conn.execute(_KINDS)}
        conn.execute("BEGIN")  # one write of the file, not one a row
        conn.executemany(job.tally_sql, tally)
        conn.execute("COMMIT")
        return Counted(kinds)
    finally:
        conn.close()


def _connect(path: str) -> _Connection:
    conn = open_file(path)
    # Nothing here needs to survive a crash: the files are dropped whatever happens.
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    return conn


class Scratch:
    """``yeastar_sql.Sink`` into the scratch table: every row kept (the store's uniqueness key
    skips duplicates when the rows are copied), and none counted here: ``_count`` counts
    them all in SQL afterwards, off the writer's path."""

    def __init__(self, conn: _Connection) -> None:
        self.conn = conn
        self.rows = 0

    def add(self, record: CdrRecord, ts: int | None = None) -> None:
        # Imported here: it brings SQLAlchemy, which only a quoted chunk needs.
        from cdrgate.storage.cdrs import row_values

        self.conn.execute(INSERT, row_values(record, None, ts))
        self.rows += 1

    def add_with(
        self, sql: str, rows: Sequence[Sequence[object]], tally: Callable[[], Tally] | None
    ) -> Tally | None:
        try:
            self.conn.executemany(sql, rows)
        except REFUSED as exc:  # in either library: the Python path must read the file
            raise yeastar_sql.Doubt(str(exc)) from None
        self.rows += len(rows)
        return None
