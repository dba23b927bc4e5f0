"""A large Yeastar file into an empty SQLite store on two cores.

One process stores rows at the speed of one core: Python's ``executemany`` of a 1M-row file's
fields into a plain table costs about as much as the sqlite3 shell's whole import. So the
file is cut in two at a line end. A child process (spawned: a forked copy of a process that
holds SQLAlchemy connections would share them) loads the second part with the fast path's
own code (``yeastar_sql.load``: the same chunks, the same SQL checks, the same tally) into a
scratch table shaped as ``cdr`` but without any index, in a scratch file of its own, while
the writer loads the first part straight into the store. The writer then copies the child's
rows with one INSERT ... SELECT in their file order (so ids follow the file, duplicates of
earlier rows skipped by the uniqueness key as always), and ``bulk_load`` builds the indexes.
Meanwhile the child counts its rows for cdr_summary (one GROUP BY in SQL, into a file of its
own) and adds the writer's tally (its part's counts, made as it read them) to those counts,
which the writer adds to cdr_summary by one INSERT ... SELECT once the copy is done. The
child's code is in ``part``, which imports no SQLAlchemy: its start-up is on the writer's path.

It all happens in the writer's one write transaction: a row either side doubts, or a child
that fails, rolls everything back and the caller reads the whole file the Python way, which
names the line. The scratch file lives in a scratch folder (``cdrgate.scratch``) removed when
the load ends, however it ends (one left by a killed process is swept by the next command that
makes one), and the child is stopped (terminated if it is still busy) before that.

This module's ``load`` is the writer's side on the store's SQLAlchemy connection, in the
system's SQLite; when apsw is installed the same side runs in apsw's (``apsw_writer.load``),
with this module's helper, job and copy.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from cdrgate.ingest import part, yeastar_sql
from cdrgate.ingest.formats import Format, row_mapper
from cdrgate.ingest.profile import SourceProfile
from cdrgate.scratch import scratch_folder
from cdrgate.storage import summary_sql
from cdrgate.storage.columns import COLUMNS

# The helper, the job and the copy serve the writer in apsw too (apsw_writer.py), which an
# import into an empty SQLite store reaches without SQLAlchemy (first_load.py): what this
# module needs of the pool's storage is imported where the pool's writer uses it.
if TYPE_CHECKING:
    from sqlalchemy import Connection

    from cdrgate.storage.cdrs import Inserter
    from cdrgate.storage.db import Database

# Below this size (~200k rows) the child's start-up (a new interpreter and its imports) is
# most of what the second core saves (bench/RESULTS.md, tenth round).
MIN_BYTES = 24 << 20
# The writer's part of the file, where both sides end together: their CPU per row in
# proportion. The writer's row costs more (the uniqueness key, the tally; ~5.6-5.7 us) than
# the child's (a table without indexes, counted after): ~3.9 us in apsw's SQLite, ~4.8 us when
# the child has only the standard library's (part.APSW; bench/RESULTS.md, twelfth and
# thirteenth rounds). The child's extra rows cost the copy ~1 us each. This is the share of a
# writer in the store's pool's SQLite; one in apsw's has its own (apsw_writer.WRITER_SHARE).
WRITER_SHARE = 0.42 if part.APSW else 0.46

SCHEMA = "import_part"  # the writer attaches the child's scratch file under this name
COUNTS = "import_counts"  # and the file of its counts under this one
# "WHERE true": SQLite would read ON CONFLICT as a join's ON without it. ORDER BY rowid: the
# rows in the order the child read them, which is the file's.
COPY = (
    f"INSERT INTO cdr ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)} "
    f"FROM {SCHEMA}.cdr WHERE true ORDER BY rowid ON CONFLICT (sn, callid) DO NOTHING"
)


_T = TypeVar("_T")


class HelperFailed(Exception):
    """The child process ended without an answer, or with an error."""


class Helper:
    """A child process for one parallel load, started as early as the caller likes (its
    start-up then overlaps the caller's own); ``close`` always."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child_end = context.Pipe()
        self._process = context.Process(
            target=part.serve, args=(child_end,), name="cdrgate-import", daemon=True
        )
        self._process.start()
        child_end.close()
        self.used = False
        self._finished = False  # its last answer received: it is ending on its own
        self._counted: part.Counted | None = None
        self._closed = False

    def submit(self, job: part.Job) -> None:
        self.used = True
        self._pipe.send(job)

    def loaded(self) -> int:
        """How many rows the child put in its scratch table (waits for them)."""
        loaded = self._answer(part.Loaded)
        return loaded.rows

    def add_to_counts(self, tally: summary_sql.Tally) -> None:
        """Have the child add ``tally`` to its counts (after ``loaded``: the child reads it
        then)."""
        try:
            self._pipe.send(summary_sql.tally_rows(tally))
        except OSError:
            raise HelperFailed(f"exit code {self._process.exitcode}") from None

    def counted(self) -> part.Counted:
        """The child's counts, in their file (waits for them; the same answer every call)."""
        if self._counted is None:
            self._counted = self._answer(part.Counted)
            self._finished = True
        return self._counted

    def _answer(self, expected: type[_T]) -> _T:
        try:
            kind, value = self._pipe.recv()
        except (EOFError, OSError):
            raise HelperFailed(f"exit code {self._process.exitcode}") from None
        if kind != "ok":
            self._finished = True
            if kind == "doubt":
                raise yeastar_sql.Doubt(value)
            raise HelperFailed(value)
        assert isinstance(value, expected)
        return value

    def close(self) -> None:
        """Stop the child: at once if it is still busy (the load failed on this side), and
        wait for it, so no process is left behind (and its CPU time is counted as ours)."""
        if self._closed:
            return
        self._closed = True
        if not self.used:
            with contextlib.suppress(OSError):  # a child already gone cannot be told
                self._pipe.send(None)  # never given a job: told to end
        if not self.used or self._finished:
            self._process.join(10)  # it is ending on its own
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()
        self._pipe.close()
        self._process.close()


def early_helper(db: Database, paths: Sequence[Path]) -> Helper | None:
    """A helper started now, before any file is read, when one of ``paths`` (a Yeastar file
    each) will be loaded in parallel into ``db``: its start-up (~0.5 s: a new interpreter and
    its imports) then runs on the other core while this process sets up the load. The caller
    passes it to ``import_file`` and closes it."""
    from cdrgate.storage.cdrs import store_is_empty

    if not (db.is_sqlite and yeastar_sql.AVAILABLE and store_is_empty(db)):
        return None
    if any(large_enough(path) for path in paths):
        return Helper()
    return None


def large_enough(path: Path) -> bool:
    """Whether the file at ``path`` may get a parallel load, by its size and this machine's
    CPUs (``worth_it`` says so of the open file)."""
    try:
        return _cores() >= 2 and path.is_file() and path.stat().st_size >= MIN_BYTES
    except OSError:
        return False


def worth_it(stream: BinaryIO) -> int | None:
    """The size of the file behind ``stream`` when it is a regular file large enough for a
    parallel load (None otherwise)."""
    name = getattr(stream, "name", None)
    if not isinstance(name, str) or not stream.seekable() or _cores() < 2:
        return None
    try:
        stat = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return None
    if not Path(name).is_file() or stat.st_size - stream.tell() < MIN_BYTES:
        return None
    return stat.st_size


def load(
    conn: Connection,
    inserter: Inserter,
    stream: BinaryIO,
    size: int,
    profile: SourceProfile,
    helper: Helper | None = None,
) -> yeastar_sql.Kinds:
    """The rows of the Yeastar file behind ``stream`` (from where it is, to its ``size``) into
    ``conn``'s write transaction on an empty store, the second part loaded by ``helper`` (a
    new one when None). Raises :class:`yeastar_sql.Doubt` or :class:`HelperFailed` when the
    caller must roll back and read the file the Python way."""
    from cdrgate.storage.attached import detach_on_checkin

    with scratch_folder("import") as folder, helping(helper) as child:
        cut, scratch, counts = submit(
            child, stream, size, WRITER_SHARE, profile, _table_info(conn), folder
        )
        kinds = yeastar_sql.load(stream, inserter, row_mapper(Format.yeastar, profile), end=cut)
        rows = child.loaded()
        # The writer's counts join the child's (in the child, while the copy runs), so the
        # upsert of ~35,000 tally rows is off the writer's path.
        tally = inserter.take_tally()
        child.add_to_counts(tally)
        detach_on_checkin(conn.engine)
        conn.exec_driver_sql(f"ATTACH ? AS {SCHEMA}", (str(scratch),))

        def counted() -> str:
            child.counted()
            conn.exec_driver_sql(f"ATTACH ? AS {COUNTS}", (str(counts),))
            return f"{COUNTS}.counts"

        if inserter.add_selected(COPY, rows, counted) != rows:
            inserter.give_tally(tally)  # the counts were not used: the writer adds its own
        kinds.update(child.counted().kinds)
    return kinds


def submit(
    child: Helper,
    stream: BinaryIO,
    size: int,
    share: float,
    profile: SourceProfile,
    table_info: Iterable[Sequence[Any]],
    folder: Path,
) -> tuple[int, Path, Path]:
    """Give ``child`` the second part of the file behind ``stream`` (from where it is, to its
    ``size``; the writer keeps ``share`` of it), for a scratch table in ``folder`` shaped as the
    store's ``cdr`` (``table_info``: the store's ``PRAGMA table_info(cdr)``); returns where the
    writer's part ends, the scratch file and the file of the child's counts."""
    start = stream.tell()
    cut = _line_end_after(stream, start + int((size - start) * share), size)
    stream.seek(start)
    scratch, counts = folder / "part.db", folder / "counts.db"
    child.submit(
        part.Job(
            str(Path(stream.name).resolve()),
            cut,
            size,
            str(scratch),
            str(counts),
            summary_sql.count_into_sql("cdr", "counts.counts"),
            summary_sql.tally_into_sql("counts.counts"),
            _columns(table_info),
            profile,
            yeastar_sql.CHUNK_BYTES,
        )
    )
    return cut, scratch, counts


def _cores() -> int:
    """The CPUs this process may run on (a container or taskset may allow fewer than exist)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _line_end_after(stream: BinaryIO, at: int, size: int) -> int:
    """The offset just after the first line feed at or after ``at`` (``size`` when none)."""
    stream.seek(at)
    while block := stream.read(1 << 16):
        found = block.find(b"\n")
        if found >= 0:
            return at + found + 1
        at += len(block)
    return size


def _table_info(conn: Connection) -> Iterable[Sequence[Any]]:
    return conn.exec_driver_sql("PRAGMA table_info(cdr)").all()


def _columns(table_info: Iterable[Sequence[Any]]) -> tuple[tuple[str, str, bool], ...]:
    """The store's cdr columns as a scratch table needs them: (name, declared type, NOT NULL),
    in ``COLUMNS`` order."""
    info = {row[1]: (row[2], bool(row[3])) for row in table_info}
    return tuple((name, *info[name]) for name in COLUMNS)


@contextmanager
def helping(helper: Helper | None) -> Iterator[Helper]:
    """``helper``, or a new one when it is None or used already; closed when the block ends."""
    child = Helper() if helper is None or helper.used else helper
    try:
        yield child
    finally:
        child.close()
