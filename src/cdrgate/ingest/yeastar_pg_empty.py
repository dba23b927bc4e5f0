"""A Yeastar file into an empty PostgreSQL store in one pass on the server: this process
parses and checks the rows and COPYs their final columns straight into a table per month,
while the import's own connection builds the months already loaded.

Why: converting the rows on the server (COPY into a stage table of text, then an INSERT ...
SELECT doing the checks, the casts and ``line``) cost ~10 s of server CPU for 1M rows, more
than 2x psql's ``\\copy`` of the file before any index was built (bench/RESULTS.md, twenty-first
round). Checked here by the Python path's own rules (``yeastar_copy``), the rows cost the
server only COPY's parse of their columns, the heap and the index builds (twenty-second round).
Here:

- **the loader**, a connection of its own, takes the file in chunks of whole lines; each
  chunk's rows, parsed in pieces of a few thousand (``yeastar_copy.Parser``), are written to
  one COPY at a time into their month's table (``cdr_import_<loader pid>_<yyyymm>``, no
  index), the server reading a piece while the next is parsed here, and each chunk is
  committed: another connection can build only on committed rows;
- **a month is taken as finished once a whole chunk has gone by without a row of it** (a
  Yeastar file is written in time order). The loader hands it to **the builder**: the
  import's own connection, in a thread, counts it (cdr_summary's counts, in a temporary
  table), builds its indexes (``pg_months.build_indexes``: duplicates within it dropped, the
  first in file order kept), adds a CHECK of its range (sparing the attach its scan) and adds
  its counts to cdr_summary, in the import's transaction. Once the file is read, the loader
  prepares the months the builder has not begun (counts into a table of its own, indexes,
  CHECK; committed) and the builder only adds their counts: the builder alone was the
  import's last seconds;
- a row of a month already handed over (a file out of time order) goes into a new table of
  that month, whose rows are added to the built one at the end in file order, ``ON CONFLICT
  DO NOTHING`` (a duplicate of a row earlier in the file is skipped), counted as they go in;
- at the end the months left are built, the late rows added, and under the partitions' DDL
  lock every month is attached (``pg_months.attach_counted``; inserted instead when its
  partition was made meanwhile), then the import's transaction commits.

The rules kept:

- the rows stored are the Python path's: a row the quick checks do not vouch for is parsed
  by its row mapper, and one the mapper refuses raises ``Doubt``: the caller rolls back and
  the Python path reads the file, naming the line;
- ids follow the file: every line (a csv record in a chunk that is not plain) takes the next
  id from one taken at the start, and cdr's sequence is moved past each chunk's as it is
  committed; the import's transaction holds the cdr insert lock from the start, so no other
  writer takes one meanwhile (``pg_bulk``);
- the store is empty (no row, no month partition), checked under that lock: no row of the
  file can be a duplicate of a stored one;
- readers never see half a file: the tables become partitions of cdr only in the import's
  transaction, which commits once;
- a failed or interrupted import leaves the store as it was: the builder is stopped (its
  statement cancelled), the import's transaction goes back to where this path began (a
  savepoint: its locks on the tables are let go), and the loader drops every table it made.
  A client killed outright cannot: its tables are dropped by the next import into an empty
  store, their loader's backend being gone.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from typing import Any, BinaryIO

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from cdrgate.ingest import yeastar_copy, yeastar_pg
from cdrgate.ingest.formats import RowMapper
from cdrgate.ingest.yeastar_sql import Kinds
from cdrgate.storage import partitions, pg_bulk, pg_months, summary
from cdrgate.storage.cdrs import Inserter
from cdrgate.storage.columns import COLUMNS
from cdrgate.storage.tables import CDR_ID_SEQUENCE

PREFIX = "cdr_import_"  # + the loader's backend pid [+ "_" + yyyymm [+ "_" + chunk]]
# A month is finished once this many whole chunks have gone by without a row of it.
FINISHED_AFTER = 1
_RANGE = "import_month_range"
# A month's cdr_summary counts, made by the builder (pg_temp: its session's own).
_COUNTS = "pg_temp.import_month_counts"
_NAMES = ", ".join(COLUMNS)


@dataclass(frozen=True)
class Month:
    start: int
    table: str
    late: bool  # rows of a month already handed to the builder


@dataclass(frozen=True)
class _Prepared:
    """A month whose indexes are built and rows counted (``_prepare``), by the loader."""

    month: Month
    counts: str  # its cdr_summary counts (a table of the loader's, committed)
    dropped: int


def applies(conn: Connection, stream: BinaryIO) -> bool:
    """Whether ``stream`` (at its start) goes this way into ``conn``'s store: more than one
    chunk (a second connection has nothing to overlap otherwise) into an empty store. Takes
    the cdr insert lock (held to the commit) before looking, so the store stays empty."""
    size = stream.seek(0, 2)
    stream.seek(0)
    if size <= yeastar_pg.CHUNK_BYTES:
        return False
    pg_bulk.serialise_cdr_inserts(conn)
    if partitions.existing(conn):
        return False
    # Asked on another connection: a lock on cdr_default held to the commit would make
    # other connections' partitions.ensure wait (pg_months._known_months).
    with conn.engine.connect() as other:
        stored = other.exec_driver_sql("SELECT EXISTS (SELECT FROM cdr)").scalar_one()
        other.rollback()
    return not stored


def load(
    conn: Connection, stream: BinaryIO, inserter: Inserter, kinds: Kinds, mapper: RowMapper
) -> None:
    """Every row of the Yeastar file ``stream`` into the empty store (``applies``), in
    ``conn``'s transaction as ``yeastar_pg.load`` does; ``kinds`` counts them, ``mapper``
    parses a row the quick checks do not vouch for (``yeastar_copy``)."""
    pg_bulk.drop_orphan_tables(conn.engine, PREFIX)
    savepoint = conn.begin_nested()
    _build_settings(conn)
    loader = _Loader(conn.engine)
    builder = _Builder(conn)
    parser = yeastar_copy.Parser(mapper, loader.first_id)
    try:
        builder.start()
        for number, block in enumerate(yeastar_pg.blocks(stream)):
            if number == 0:
                block = block.removeprefix(yeastar_pg.BOM)
            rows, finished = loader.load(parser, block)
            builder.take(finished)
            if rows:
                inserter.add_apart(rows, rows)
        builder.take(loader.finish())
        # The file read, the loader's connection prepares months too: the builder alone
        # was the import's last seconds (bench/RESULTS.md, twenty-second round).
        prepared = []
        while (month := builder.spare()) is not None:
            prepared.append(loader.prepare(month))
        dropped = builder.finish(prepared)
        kinds.update(builder.kinds)
        dropped += _add_late(conn, loader.late, builder.built, kinds)
        months_built = ((month.start, month.table) for month in builder.built)
        dropped += pg_months.attach_counted(conn, months_built, _RANGE)
        savepoint.commit()
        inserter.inserted -= dropped
    except BaseException:
        builder.stop()
        savepoint.rollback()  # the builder's locks on the loader's tables go with it
        loader.drop_tables()
        raise
    finally:
        loader.close()


class _Loader:
    """The loader's connection: each chunk's months COPYed into their tables, committed."""

    def __init__(self, engine: Engine) -> None:
        self.conn = engine.connect()
        pid = int(self.conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
        # The file's ids from here on, a line each: the import's own transaction holds the
        # cdr insert lock (``applies``), so no other writer takes one meanwhile; the sequence
        # is moved past each chunk's as it is loaded.
        self.first_id = pg_bulk.take_ids(self.conn, 1)
        self.conn.commit()
        self.prefix = f"{PREFIX}{pid}"
        self.routed: dict[int, Month] = {}  # month start -> its table that rows go to now
        self.last_seen: dict[int, int] = {}  # month start -> the last chunk holding a row of it
        self.handed: set[int] = set()  # months handed to the builder
        self.late: list[Month] = []
        self.tables: list[str] = []  # every table made, for drop_tables
        self.number = 0  # chunks loaded

    def load(self, parser: yeastar_copy.Parser, block: bytes) -> tuple[int, list[Month]]:
        """``block``'s rows in, committed; returns how many and the months finished now."""
        conn = self.conn
        number = self.number
        self.number += 1
        rows = 0
        with conn.begin():
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            # One COPY open at a time, into one month's table, in one format; the pieces
            # are written as they are parsed, while the server reads the ones before.
            copies = ExitStack()
            open_as: tuple[str, bool] | None = None
            try:
                with copies:
                    for piece in parser.pieces(block):
                        self.last_seen[piece.month] = number
                        if piece.month not in self.routed:
                            copies.close()
                            open_as = None
                            self._route(piece.month, number)
                        table = self.routed[piece.month].table
                        quick = bool(piece.quick)
                        if open_as != (table, quick):
                            copies.close()
                            sql = yeastar_copy.QUICK_COPY if quick else yeastar_copy.ROWS_COPY
                            copy = copies.enter_context(cursor.copy(sql.format(table=table)))
                            open_as = table, quick
                        if quick:
                            copy.write(piece.quick)
                        else:
                            for row in piece.rows:
                                copy.write_row(row)
                        rows += piece.size
            finally:
                cursor.close()
            # Past the chunk's ids (never back before the first: a chunk of blank lines).
            last = max(parser.next_id - 1, self.first_id)
            conn.exec_driver_sql(f"SELECT setval('{CDR_ID_SEQUENCE}', {last})")
        finished = [
            month
            for start, month in self.routed.items()
            if self.last_seen[start] <= number - FINISHED_AFTER
        ]
        return rows, self._hand(finished)

    def finish(self) -> list[Month]:
        """The months still routed (the file is done)."""
        return self._hand(list(self.routed.values()))

    def _route(self, start: int, number: int) -> None:
        name = f"{self.prefix}_{partitions.partition_name(start).removeprefix('cdr_p')}"
        late = start in self.handed
        if late:
            name += f"_{number}"
        self.conn.exec_driver_sql(
            f"CREATE TABLE {name} (LIKE cdr INCLUDING DEFAULTS) "
            # Committed, so autovacuum would analyse it while the import goes on; it does
            # once it is cdr's partition.
            "WITH (autovacuum_enabled = false)"
        )
        self.tables.append(name)
        self.routed[start] = Month(start, name, late)

    def _hand(self, months: list[Month]) -> list[Month]:
        """The months committed and done with: the new ones for the builder; late ones kept."""
        for month in months:
            del self.routed[month.start]
        self.late += [month for month in months if month.late]
        self.handed.update(month.start for month in months)
        return [month for month in months if not month.late]

    def prepare(self, month: Month) -> _Prepared:
        """``_prepare`` of ``month`` here, committed (its counts in a table of its own)."""
        counts = f"{month.table}_counts"
        self.tables.append(counts)
        with self.conn.begin():
            _build_settings(self.conn)
            return _Prepared(month, counts, _prepare(self.conn, month, counts))

    def drop_tables(self) -> None:
        """Drop every table made (after the import's transaction let go of them). Bounded:
        what is not dropped now is an orphan for the next import (``pg_bulk.drop_orphan_tables``)."""
        if not self.tables:
            return
        # Not raised: the import's own error is the one to report.
        with suppress(DBAPIError):
            self.conn.rollback()
            with self.conn.begin():
                self.conn.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
                self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS {', '.join(self.tables)}")

    def close(self) -> None:
        """End the loader's session, which makes any table of it left behind an orphan."""
        try:
            with suppress(DBAPIError):  # a broken connection: the session ends anyway
                self.conn.rollback()
        finally:
            self.conn.invalidate()
            self.conn.close()


class _Builder:
    """The import's connection, in a thread, building each month handed to it in turn."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.todo: queue.SimpleQueue[Month | _Prepared | None] = queue.SimpleQueue()
        self.built: list[Month] = []
        self.kinds: Kinds = Counter()  # the rows of the months built, as read (duplicates too)
        self.dropped = 0
        self.error: BaseException | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="cdrgate-import-builder")

    def start(self) -> None:
        self.thread.start()

    def take(self, months: list[Month]) -> None:
        """Build ``months`` next; raises what stopped the builder, if anything did."""
        if self.error is not None:
            raise self.error
        for month in months:
            self.todo.put(month)

    def spare(self) -> Month | None:
        """A month handed over and not begun yet, taken back (for the loader to prepare)."""
        try:
            item = self.todo.get_nowait()
        except queue.Empty:
            return None
        # Only months are queued before ``finish`` (which queues what was prepared, then None).
        assert isinstance(item, Month), item
        return item

    def finish(self, prepared: list[_Prepared]) -> int:
        """Once every month handed over is built, and ``prepared`` added: how many
        duplicates were dropped."""
        for item in prepared:
            self.todo.put(item)
        self.todo.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.dropped

    def stop(self) -> None:
        """Stop at once (the import failed): the running statement cancelled."""
        self.stopping.set()
        self.todo.put(None)
        if self.thread.is_alive():
            driver: Any = self.conn.connection.driver_connection
            driver.cancel_safe()
        if self.thread.ident is not None:  # started
            self.thread.join()

    def _run(self) -> None:
        try:
            while (item := self.todo.get()) is not None and not self.stopping.is_set():
                if isinstance(item, Month):
                    item = _Prepared(item, _COUNTS, _prepare(self.conn, item, _COUNTS))
                _add(self.conn, item, self.kinds)
                self.dropped += item.dropped
                self.built.append(item.month)
        except BaseException as exc:  # the loader hears of it at its next chunk
            self.error = exc


def _build_settings(conn: Connection) -> None:
    """The settings of a transaction building months' indexes (to its end)."""
    conn.exec_driver_sql(f"SET LOCAL maintenance_work_mem = '{pg_months.INDEX_MEMORY}'")
    # No parallel workers: the loader, this process and a second build keep both cores busy
    # already, and a month's build on workers cost ~0.7-1.7 s more server CPU an import
    # (bench/RESULTS.md, twenty-second round).
    conn.exec_driver_sql("SET LOCAL max_parallel_maintenance_workers = 0")


def _prepare(conn: Connection, month: Month, counts: str) -> int:
    """``month``'s cdr_summary counts into the new table ``counts``, then its indexes and
    range CHECK; returns the duplicates dropped. Any connection may do it, in a transaction
    of its own (the loader, once the file is read) or in the import's (the builder)."""
    # One pass over the rows counts both: the kinds from cdr_summary's counts of the month
    # (every row, as read), the counts themselves added once the duplicates are known.
    summary.count_into(conn, month.table, counts)
    dropped = pg_months.build_indexes(conn, month.table)
    conn.exec_driver_sql(
        f"ALTER TABLE {month.table} ADD CONSTRAINT {_RANGE} "
        f"CHECK (ts >= {month.start} AND ts < {partitions.next_month(month.start)})"
    )
    return dropped


def _add(conn: Connection, prepared: _Prepared, kinds: Kinds) -> None:
    """A prepared month's counts into ``kinds`` and cdr_summary (the import's transaction)."""
    for type_, status, count in conn.exec_driver_sql(
        f"SELECT type, status, sum(calls) FROM {prepared.counts} GROUP BY 1, 2"
    ):
        kinds[type_, status] += count
    if prepared.dropped:  # rare: the counts hold the duplicates dropped since, so count again
        summary.add_table(conn, prepared.month.table)
    else:
        summary.add_counted(conn, prepared.counts)
    conn.exec_driver_sql(f"DROP TABLE {prepared.counts}")


def _count_kinds(conn: Connection, table: str, kinds: Kinds) -> int:
    """``table``'s rows per (type, status) into ``kinds``: what the one-connection path's
    survey counts per chunk, here counted per month off the loader's path; returns how
    many rows it holds."""
    rows = 0
    for type_, status, count in conn.exec_driver_sql(
        f"SELECT type, status, count(*) FROM {table} GROUP BY 1, 2"
    ):
        kinds[type_, status] += count
        rows += count
    return rows


def _add_late(conn: Connection, late: list[Month], built: list[Month], kinds: Kinds) -> int:
    """Each late table's rows into its month's built table, in file order, duplicates of the
    rows before them skipped, counted as they go in; returns how many were skipped."""
    tables = {month.start: month.table for month in built}
    skipped = 0
    for month in late:  # in the order they were made: file order
        rows = _count_kinds(conn, month.table, kinds)
        skipped += rows - summary.insert_counted(
            conn,
            f"INSERT INTO {tables[month.start]} (id, {_NAMES}) "
            f"SELECT id, {_NAMES} FROM {month.table} ORDER BY id",
        )
        conn.exec_driver_sql(f"DROP TABLE {month.table}")
    return skipped
