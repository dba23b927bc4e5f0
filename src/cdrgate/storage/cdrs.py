"""The ``cdr`` table: bulk insert without duplicates (``Inserter``, the one way rows go in),
and the ordered export query."""

from __future__ import annotations

import logging
import random
import sqlite3
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    CompoundSelect,
    Connection,
    FromClause,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    func,
    or_,
    select,
    text,
    tuple_,
    union,
    union_all,
)

from cdrgate.cdr import CdrRecord, row_without_nul
from cdrgate.scope import Scope
from cdrgate.storage import day_months, pg_bulk, summary
from cdrgate.storage.columns import COLUMNS as COLUMNS  # its home is columns.py
from cdrgate.storage.db import Database
from cdrgate.storage.driver import (
    PostgresStatement,
    SqliteStatement,
    postgres_driver,
    sqlite_driver,
)
from cdrgate.storage.sqlite_settings import SECONDARY_INDEXES, SORTER_SETTINGS
from cdrgate.storage.tables import cdr
from cdrgate.timefmt import parse_pbx_time

INSERT_BATCH = 5000


def row_values(
    record: CdrRecord, line: str | None = None, ts: int | None = None
) -> tuple[object, ...]:
    """The insert tuple for ``record``, in ``COLUMNS`` order (``ts``: timestart, if known)."""
    if line is None:
        line = record.csv_line()
    if "\x00" in line:
        # Every insert comes through here, so the NUL rule holds for stored rows whatever the
        # source (and PostgreSQL text cannot hold NUL).
        record = CdrRecord._make(
            (*row_without_nul(record[:4]), *record[4:6], *row_without_nul(record[6:]))
        )
        line = record.csv_line()
    r = record
    return (
        r.sn, r.callid, parse_pbx_time(r.timestart) if ts is None else ts, r.callfrom,
        r.callto, r.callduraction, r.talkduraction, r.srctrunkname, r.dsttrunkname, r.status,
        r.type, r.pincode, r.recording, r.didnumber,
        line,
    )  # fmt: skip


def insert_sql(db: Database) -> str:
    marks = ", ".join([db.placeholder()] * len(COLUMNS))
    return (
        f"INSERT INTO cdr ({', '.join(COLUMNS)}) VALUES ({marks}) "
        "ON CONFLICT (sn, callid) DO NOTHING"
    )


def insert_rows(conn: Connection, sql: str, rows: Sequence[tuple[object, ...]]) -> int:
    """Insert prepared tuples; returns how many were new (duplicates are skipped)."""
    if not rows:
        return 0
    if conn.dialect.name == "postgresql":
        # COPY + one set-wise INSERT (``sql`` is the SQLite spelling); see pg_bulk.
        return pg_bulk.copy_rows(conn, COLUMNS, rows)
    return execute_many(conn, sql, rows)


def execute_many(conn: Connection, sql: str, rows: Sequence[Sequence[object]]) -> int:
    """SQLite: one statement over ``rows`` on the driver cursor; returns the rows changed."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(sql, rows)
        return max(int(cursor.rowcount), 0)
    finally:
        cursor.close()


@contextmanager
def bulk_load(conn: Connection) -> Iterator[bool]:
    """Around a load in the caller's write transaction; yields True when the load should put
    everything in this one transaction, for its secondary indexes are built once after it.

    On SQLite into an empty ``cdr`` table, the secondary indexes (as the migrations made
    them, read from the schema) are dropped and created again at the end: one sorted build
    instead of a random B-tree insert per row and index, about a quarter off a 1M-row load
    (bench/RESULTS.md, docs/storage.md). Everything happens inside the transaction, so a
    failed load rolls back to the empty table with its indexes, and readers meanwhile see
    the committed (empty) table. The uniqueness key stays: it skips duplicates as usual.
    Into a SQLite store with rows it yields False with a larger page cache (``_load_cache``);
    on PostgreSQL it does nothing and yields False.
    """
    if conn.dialect.name != "sqlite":
        yield False
        return
    if not is_empty(conn):
        with _load_cache(conn):
            yield False
        return
    indexes = conn.execute(_SECONDARY_INDEXES).all()
    for name, _ in indexes:
        conn.exec_driver_sql(f'DROP INDEX "{name}"')
    yield True
    with _sorter_on_threads(conn):
        for _, create in indexes:
            conn.exec_driver_sql(create)


@contextmanager
def _sorter_on_threads(conn: Connection) -> Iterator[None]:
    """The connection's sorter threads, page cache and temporary storage set for an index
    build, then restored."""
    names = ("threads", "cache_size", "temp_store")
    saved = {name: int(conn.exec_driver_sql(f"PRAGMA {name}").scalar_one()) for name in names}
    threads, cache, temp_files_setting = SORTER_SETTINGS
    conn.exec_driver_sql(f"PRAGMA {threads}")
    conn.exec_driver_sql(f"PRAGMA {cache}")
    # SQLite changes temp_store inside a transaction only while the connection has no
    # temporary table (changing it drops them all); a caller that has one keeps its setting
    # and builds on one thread, as before.
    temp_files = _try_pragma(conn, temp_files_setting)
    try:
        yield
    finally:
        if temp_files:
            _try_pragma(conn, f"temp_store = {saved['temp_store']}")
        conn.exec_driver_sql(f"PRAGMA cache_size = {saved['cache_size']}")
        conn.exec_driver_sql(f"PRAGMA threads = {saved['threads']}")


# Into a store with rows, every row goes into four secondary B-trees far larger than the
# connection's 64 MB cache (a 5M-row store's are ~1 GB); a larger cache while the load runs
# keeps more of their inner pages and reads fewer back from the OS: into 5M rows, CPU 19.2-19.5
# -> 17.3-18.3 s for 1M rows, its system time 5.8-6.0 -> 4.1-4.5 s (512 MB was no better;
# bench/RESULTS.md, ninth round). SQLite allocates pages as it uses them, and frees them when
# the setting is restored.
_LOAD_CACHE_KIB = 256 * 1024


@contextmanager
def _load_cache(conn: Connection) -> Iterator[None]:
    """The connection's page cache set to ``_LOAD_CACHE_KIB`` for the load, then restored."""
    saved = int(conn.exec_driver_sql("PRAGMA cache_size").scalar_one())
    conn.exec_driver_sql(f"PRAGMA cache_size = -{_LOAD_CACHE_KIB}")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size = {saved}")


def _try_pragma(conn: Connection, setting: str) -> bool:
    """Whether SQLite took ``setting`` (on the driver: a refusal leaves the transaction as
    it was)."""
    raw = sqlite_driver(conn)
    assert raw is not None
    try:
        raw.execute(f"PRAGMA {setting}")
    except sqlite3.OperationalError:
        return False
    return True


def is_empty(conn: Connection) -> bool:
    return conn.execute(_ANY_ROW).first() is None


def store_is_empty(db: Database) -> bool:
    """``is_empty`` in a read of its own (a bulk load asks before it takes the write lock)."""
    with db.read() as conn:
        return is_empty(conn)


_ANY_ROW = select(cdr.c.id).limit(1)
_SECONDARY_INDEXES = text(SECONDARY_INDEXES)


class Inserter:
    """Adds CDRs on one connection (inside the caller's transaction) in batches of
    ``INSERT_BATCH``; duplicates are skipped. ``flush`` before the transaction ends: it also
    counts the transaction's new rows in cdr_summary (a GROUP BY of the rows stored since the
    first insert, and the tallies of batches counted as they were read: ``add_with``)."""

    def __init__(
        self, db: Database, conn: Connection, progress: Callable[[int], None] | None = None
    ) -> None:
        self.conn = conn
        self.sql = insert_sql(db)
        self.progress = progress
        self.batch: list[tuple[object, ...]] = []
        self.rows = self.inserted = 0
        # The newest id before this transaction's rows not yet in cdr_summary (None: none).
        self._unsummarised_after: int | None = None
        # Counts of stored rows that were counted as they were read (``add_with``).
        self._tallied: summary.Tally = {}

    def add(self, record: CdrRecord, ts: int | None = None, line: str | None = None) -> None:
        self.batch.append(row_values(record, line, ts))
        self.rows += 1
        if len(self.batch) >= INSERT_BATCH:
            self._insert_pending()

    def add_all(self, records: Iterable[CdrRecord]) -> None:
        for record in records:
            self.add(record)

    def add_rows(self, rows: Sequence[tuple[object, ...]]) -> None:
        """Tuples already built by ``row_values`` (elsewhere, e.g. in a helper process)."""
        self._insert_pending()
        self.rows += len(rows)
        self._insert(rows)

    def add_with(
        self,
        sql: str,
        rows: Sequence[Sequence[object]],
        tally: Callable[[], summary.Tally] | None = None,
    ) -> summary.Tally | None:
        """SQLite: rows for another INSERT into ``cdr``, one that builds the stored values
        itself (the Yeastar fast path's), in order with the rows added otherwise.

        ``tally`` counts the rows for cdr_summary; it is called once they are in (the INSERT
        has checked them) and its result returned. When every row was new and the tally is
        exact, it is what cdr_summary gets for them; otherwise they are counted by SQL."""
        self._insert_pending()
        return self._counted(len(rows), lambda: execute_many(self.conn, sql, rows), tally)

    def add_selected(self, sql: str, rows: int, counted: Callable[[], str] | None = None) -> int:
        """SQLite: one INSERT ... SELECT into ``cdr`` of ``rows`` rows made elsewhere (a
        parallel load's scratch table), in order after the rows added so far. Returns how
        many were new.

        ``counted`` names a table holding those rows' cdr_summary counts (the shape
        ``summary.count_into`` makes); it is called once the rows are in, so the counts may
        still be in the making while they are copied. When every row was new, cdr_summary
        gets those counts; otherwise (or without ``counted``) the rows are counted by SQL."""
        self._insert_pending()
        self.rows += rows
        if counted is None:
            self._note_first_insert()
        else:
            self._count_unsummarised()
        before = summary.newest_id(self.conn)
        new = max(int(self.conn.exec_driver_sql(sql).rowcount), 0)
        self.inserted += new
        if counted is not None and new == rows:
            summary.add_counted(self.conn, counted())
        elif counted is not None:
            self._unsummarised_after = before
        if self.progress is not None:
            self.progress(rows)
        return new

    def add_apart(self, rows: int, new: int) -> None:
        """PostgreSQL: ``rows`` rows stored by the caller outside ``cdr``, ``new`` of them
        new, that it counts in cdr_summary itself (months loaded apart: storage/pg_months.py)."""
        self.rows += rows
        self.inserted += new
        if self.progress is not None:
            self.progress(rows)

    def before_ids(self) -> None:
        """About to take ids for rows that ``add_selected`` will store (without ``counted``):
        the mark below which ``flush`` does not count must be below them."""
        self._note_first_insert()

    def take_tally(self) -> summary.Tally:
        """The counts of the rows stored so far that were counted as they were read (see
        ``add_with``), no longer added by ``flush``: the caller adds them to cdr_summary
        another way, or gives them back with ``give_tally``."""
        tally, self._tallied = self._tallied, {}
        return tally

    def give_tally(self, tally: summary.Tally) -> None:
        """Counts of stored rows (``take_tally``'s) for ``flush`` to add to cdr_summary."""
        summary.merge_tally(self._tallied, tally)

    def _count_unsummarised(self) -> None:
        """Count the rows above the mark by SQL now, before rows counted otherwise join them
        above it."""
        if self._unsummarised_after is not None:
            summary.add_stored(self.conn, self._unsummarised_after)
            self._unsummarised_after = None

    def _counted(
        self, rows: int, insert: Callable[[], int], tally: Callable[[], summary.Tally] | None
    ) -> summary.Tally | None:
        self.rows += rows
        if tally is None:
            self._note_first_insert()
        else:
            self._count_unsummarised()
        before = None if tally is None else summary.newest_id(self.conn)
        new = insert()
        self.inserted += new
        counts = None
        if tally is not None:
            counts = tally()
            if new == rows and summary.tally_is_exact(counts):
                summary.merge_tally(self._tallied, counts)
            else:
                self._unsummarised_after = before
        if self.progress is not None:
            self.progress(rows)
        return counts

    def flush(self) -> int:
        """Insert what is pending and count it in cdr_summary; returns the number of new rows
        so far."""
        self._insert_pending()
        self._count_unsummarised()
        summary.add_tally(self.conn, self._tallied)
        self._tallied = {}
        return self.inserted

    def _note_first_insert(self) -> None:
        if self._unsummarised_after is None:
            self._unsummarised_after = summary.newest_id(self.conn)

    def _insert_pending(self) -> None:
        if self.batch:
            self._insert(self.batch)
            self.batch = []

    def _insert(self, rows: Sequence[tuple[object, ...]]) -> None:
        self._note_first_insert()
        self.inserted += insert_rows(self.conn, self.sql, rows)
        if self.progress is not None:
            self.progress(len(rows))


def insert_records(db: Database, conn: Connection, records: Iterable[CdrRecord]) -> int:
    """Insert records on ``conn`` (duplicates skipped); returns how many were new."""
    inserter = Inserter(db, conn)
    inserter.add_all(records)
    return inserter.flush()


@dataclass(frozen=True)
class CdrQuery:
    """Which CDRs a download covers: ``timestart`` in [start, end], by extension unless None;
    with ``extensions`` None, an account's ``scope`` (when it has one) stands in for them."""

    start_ts: int
    end_ts: int
    extensions: tuple[str, ...] | None = None
    scope: Scope | None = None


Key = tuple[str, str]  # (callid, sn): the order of CDRs within one second


def export_select(
    query: CdrQuery,
    *,
    after: Key | None = None,
    limit: int | None = None,
    keyed: bool = False,
    sqlite: bool = False,
) -> Select[Any]:
    """Rows' CSV lines in download order, with ``query``'s values bound (for EXPLAIN), in the
    form run on SQLite (``sqlite``) or PostgreSQL."""
    stmt = _template(query, after, limit, keyed, by_rowid=sqlite)
    return stmt.params(_params(query, after, limit))


def read_lines(conn: Connection, query: CdrQuery, limit: int | None = None) -> list[str]:
    """The CSV lines of ``query`` in download order. Callers bound the range (a page)."""
    params = _params(query, None, limit)
    if query.scope is None:
        # A small download's read (in its redeem's transaction): on the driver, as the
        # flow's other statements (storage/driver.py). A scope's values are in its statement.
        exts = 0 if query.extensions is None else len(query.extensions)
        by_extension, limited = query.extensions is not None, limit is not None
        raw = sqlite_driver(conn)
        if raw is not None:
            sqlite_stmt = _sqlite_statement(by_extension, limited, exts)
            return [row[0] for row in sqlite_stmt.run(raw, params)]
        postgres = postgres_driver(conn)
        if postgres is not None:
            postgres_stmt = _postgres_statement(by_extension, limited, exts)
            return [row[0] for row in postgres_stmt.run(postgres, params)]
    stmt = _template(query, None, limit, False, by_rowid=_by_rowid(conn))
    return [row[0] for row in _fetch(conn, stmt, params)]


def read_whole(conn: Connection, query: CdrQuery, most: int) -> list[str] | None:
    """The CSV lines of ``query`` in download order if there are at most ``most``, else None
    (then the caller pages it). Callers bound the range: a small download's, read in its
    redeem's transaction.

    On the driver, for extensions, without a LIMIT: with one, SQLite sorts ``_either_side``'s
    rows in a temporary B-tree that keeps only the first ones, and creating it zeroes a 4 KiB
    page on every read; without, its sorter orders them in memory: -12 % instructions a read
    (bench/RESULTS.md, sixteenth round). The price: the range's matching rows are all held by
    the sorter for the moment of the read, where the B-tree held ``most`` + 1 (the rows are
    scanned either way; at ``temp_store=MEMORY`` the sorter never spills to a file). Only
    ``most`` + 1 become Python objects."""
    raw = sqlite_driver(conn)
    if raw is not None and query.scope is None and query.extensions is not None:
        unlimited = _sqlite_statement(True, False, len(query.extensions))
        cursor = unlimited.run(raw, _params(query, None, None))
        rows = cursor.fetchmany(most + 1)
        cursor.close()  # a statement with rows left must not stay open in the transaction
        lines = [row[0] for row in rows]
    else:
        lines = read_lines(conn, query, limit=most + 1)
    return lines if len(lines) <= most else None


@lru_cache(maxsize=256)
def _sqlite_statement(by_extension: bool, limited: bool, exts: int) -> SqliteStatement:
    """A read without a scope, compiled for the driver, per list length: ``_statement``, or
    ``_either_side`` for extensions."""
    if by_extension:
        return SqliteStatement.of(_either_side(limited), expand={"exts": exts})
    return SqliteStatement.of(_statement(False, False, limited, False, None, False, True))


@lru_cache(maxsize=256)
def _postgres_statement(by_extension: bool, limited: bool, exts: int) -> PostgresStatement:
    """``_sqlite_statement`` for PostgreSQL: ``_both_sides`` for extensions, else
    ``_statement`` (without SQLite's read by row ids)."""
    if by_extension:
        return PostgresStatement.of(_both_sides(limited), expand={"exts": exts})
    return PostgresStatement.of(_statement(False, False, limited, False, None, False, False))


def day_lines(limited: bool, month: str | None = None) -> CompoundSelect[Any]:
    """``_both_sides`` with each row's order (ts, callid, sn) beside its line: a small
    download's read inside a larger PostgreSQL statement (storage/session_day.py). ``month``:
    read from that monthly partition of ``cdr`` (``storage/day_months.py``) instead of ``cdr``,
    named ``cdr`` in the statement; the caller names one only for a range inside its month."""
    source = cdr if month is None else day_months.month_table(month)
    return _both_sides(limited, source)


def _both_sides(limited: bool, source: FromClause = cdr) -> CompoundSelect[Any]:
    """PostgreSQL's read of the rows where an extension is the caller or the callee, each
    line with its order (ts, callid, sn) beside it: the caller's side, then the callee's rows
    whose caller is not one of the extensions (disjoint, so UNION ALL keeps each row once),
    ordered by the unique (ts, callid, sn). Each side is an index-only scan of its covering
    index (migration 0017: the key, then the columns read) once the month's pages are
    all-visible (``storage/visible.py``), where ``_either_side``'s BitmapOr read each row's
    table page: 198 -> 83 us of PostgreSQL's CPU a day's read at ~67 rows (bench/RESULTS.md,
    twenty-sixth round)."""
    exts: BindParameter[str] = bindparam("exts", expanding=True)
    c = source.c
    in_range = c.ts.between(bindparam("start"), bindparam("end"))
    columns = (c.line, c.ts, c.callid, c.sn)
    caller = select(*columns).where(c.callfrom.in_(exts), in_range)
    callee = select(*columns).where(c.callto.in_(exts), c.callfrom.not_in(exts), in_range)
    stmt = union_all(caller, callee).order_by(text("ts, callid, sn"))
    return stmt.limit(bindparam("limit", type_=Integer)) if limited else stmt


def _either_side(limited: bool, source: FromClause = cdr) -> Select[Any]:
    """The rows where an extension is the caller or the callee, as one OR of the two index
    ranges, each with the time range in it, so that SQLite scans each of its indexes
    ((callfrom, ts), (callto, ts)) over the range alone and keeps each row once ("MULTI-INDEX
    OR": a set of row ids in memory). ``_statement``'s ``id IN (... UNION ALL ...)`` builds
    a temporary B-tree for its set of ids, a page of memory zeroed and filled on every read:
    a small download's read costs 16 % fewer instructions this way (bench/RESULTS.md,
    fifteenth round). With the covering indexes (migration 0017) SQLite reads the columns
    from the index entries, not the table: 85 -> 43 us a read at ~67 rows (twenty-seventh
    round). SQLite only (PostgreSQL reads ``_both_sides``); on the driver only: the paged
    reads keep ``_statement``'s form."""
    exts: BindParameter[str] = bindparam("exts", expanding=True)
    c = source.c
    in_range = c.ts.between(bindparam("start"), bindparam("end"))
    either = or_(and_(c.callfrom.in_(exts), in_range), and_(c.callto.in_(exts), in_range))
    stmt = select(c.line).where(either).order_by(c.ts, c.callid, c.sn)
    return stmt.limit(bindparam("limit", type_=Integer)) if limited else stmt


@dataclass(frozen=True)
class Lines:
    """A page's CSV lines in download order, as UTF-8: ``rows`` of them, joined in ``body``;
    read to be inspected one by one (``csv_safe``), they are in ``each`` and ``body`` is empty.
    """

    rows: int
    body: bytes = b""
    each: list[bytes] | None = None

    @classmethod
    def of(cls, lines: list[bytes], each: bool) -> Lines:
        return cls(len(lines), each=lines) if each else cls(len(lines), b"".join(lines))


def read_whole_seconds(
    conn: Connection, query: CdrQuery, most: int, each: bool = False
) -> tuple[Lines, int | None]:
    """A long export's page: up to ``most`` CSV lines of ``query`` in download order, whole
    seconds only. Returns (lines, cut): ``cut`` is the first second left out, None when the
    whole range is in; no lines with a cut when that second alone holds more than ``most``.
    ``each``: the lines one by one (else joined, on SQLite by SQLite itself when it can).
    """
    if query.extensions is None and query.scope is None:
        # The (ts, callid, sn) index alone says where the page ends (no table lookup), and
        # the lines are then read without their ts (as Python ints, a fifth of the read).
        # One transaction: on SQLite one snapshot; on PostgreSQL (READ COMMITTED) a CDR
        # stored in between makes the page one row longer, never wrong.
        bounds = {**_params(query, None, None), "offset": most}
        cut: int | None = conn.execute(_cut_probe(), bounds).scalar()
        if cut is not None:
            query = replace(query, end_ts=cut - 1)
        if query.end_ts < query.start_ts:
            return Lines(0), cut
        raw = sqlite_driver(conn)
        joined = None if raw is None or each else joined_page(raw, query.start_ts, query.end_ts)
        if joined is not None:
            return joined, cut
        rows = _fetch_utf8(conn, query, None)
        return Lines.of([row[0] for row in rows], each), cut
    # Extensions or a scope: a UNION of two index scans; one read with the rows' ts, cut after
    # its last whole second.
    rows = _fetch_utf8(conn, query, most + 1, timed=True)
    if len(rows) <= most:
        return Lines.of([row[0] for row in rows], each), None
    cut = rows[most][1]
    kept = rows[: bisect_left(rows, cut, key=itemgetter(1))]
    return Lines.of([row[0] for row in kept], each), cut


# A page joined by SQLite: one value instead of a Python tuple per row, which was two thirds
# of a full export's CPU (bench/RESULTS.md, seventh round). Only for ``extid=all`` (one range
# of the (ts, callid, sn) index); SQLite's join order is what makes it correct:
# - SQLite 3.44+ defines it: ``group_concat(... ORDER BY ...)``, at the price of a sort per
#   page (a temp B-tree; measured on 3.54: about twice the join's CPU, docs/storage.md).
# - Before 3.44 the docs call the order of an aggregate's rows arbitrary. What it is: the
#   FROM-subquery with ORDER BY is run as a co-routine (EXPLAIN QUERY PLAN: "CO-ROUTINE",
#   then "SCAN (subquery-1)") that yields its rows in its ORDER BY order, one at a time, to
#   the aggregate. SQLite drops a FROM-subquery's ORDER BY only where it cannot matter, and
#   its source (select.c, the omit-ORDER-BY rule) names an outer aggregate other than
#   count/min/max as a case where it must be kept: group_concat's order is the reason. Those
#   libraries are released and do not change, so this is checked three
#   ways: once per process against this library (``joins_in_order``: shuffled inserts with
#   ties on ts), on every page (the body starts with the first line and ends with the last,
#   each read by the index in the same statement, so the same snapshot; the count comes from
#   it too), and by tests. Any doubt: the page is read row by row, as before.
_JOINED_ORDERED = (
    "SELECT count(*), group_concat(line, '' ORDER BY ts, callid, sn), NULL, NULL "
    "FROM cdr WHERE ts BETWEEN ?1 AND ?2"
)
_EDGE = (
    "SELECT line FROM cdr WHERE ts BETWEEN ?1 AND ?2 ORDER BY ts {0}, callid {0}, sn {0} LIMIT 1"
)
_JOINED_COROUTINE = (
    f"SELECT count(*), group_concat(line, ''), ({_EDGE.format('ASC')}), ({_EDGE.format('DESC')}) "
    "FROM (SELECT line FROM cdr WHERE ts BETWEEN ?1 AND ?2 ORDER BY ts, callid, sn)"
)
_ORDER_IN_AGGREGATE = (3, 44, 0)
log = logging.getLogger("cdrgate.storage")


def joined_page(raw: sqlite3.Connection, start: int, end: int) -> Lines | None:
    """The lines of seconds [start, end] joined by SQLite, or None where the join's order
    cannot be trusted (then the caller reads the rows)."""
    defined = sqlite3.sqlite_version_info >= _ORDER_IN_AGGREGATE
    if not defined and not joins_in_order():
        return None
    with _text_as_bytes(raw):
        rows, body, first, last = raw.execute(
            _JOINED_ORDERED if defined else _JOINED_COROUTINE, (start, end)
        ).fetchone()
    page = Lines(rows, body or b"")
    if defined or not rows or (page.body.startswith(first) and page.body.endswith(last)):
        return page
    _distrust_joins()
    log.error("SQLite joined a page out of order: pages are read row by row from now on")
    return None


class _JoinVerdict:
    """This process's verdict on the co-routine join: checked on first use, withdrawn for
    good when a page fails its check."""

    trusted: bool | None = None


def joins_in_order() -> bool:
    """Whether this SQLite library joins a page in its subquery's order: checked once, on a
    table shaped as ``cdr`` (same index), with rows inserted shuffled and ties on ts."""
    if _JoinVerdict.trusted is None:
        _JoinVerdict.trusted = _check_join_order()
    return _JoinVerdict.trusted


def _distrust_joins() -> None:
    _JoinVerdict.trusted = False


def _check_join_order() -> bool:
    rng = random.Random(17)
    keys = [(rng.randrange(40), f"c{rng.randrange(50):02d}", f"{n}") for n in range(600)]
    rng.shuffle(keys)
    probe = sqlite3.connect(":memory:")
    try:
        probe.execute("CREATE TABLE cdr (id INTEGER PRIMARY KEY, ts, callid, sn, line)")
        probe.execute("CREATE INDEX ix ON cdr (ts, callid, sn)")
        probe.executemany(
            "INSERT INTO cdr (ts, callid, sn, line) VALUES (?, ?, ?, ?)",
            [(ts, callid, sn, f"{ts},{callid},{sn}\n") for ts, callid, sn in keys],
        )
        for start, end in ((0, 39), (3, 17), (20, 20)):
            joined = probe.execute(_JOINED_COROUTINE, (start, end)).fetchone()[1]
            read = probe.execute(
                "SELECT line FROM cdr WHERE ts BETWEEN ? AND ? ORDER BY ts, callid, sn",
                (start, end),
            )
            if joined != "".join(line for (line,) in read):
                return False
        return True
    finally:
        probe.close()


@lru_cache(maxsize=1)
def _cut_probe() -> Select[Any]:
    """The ts of the CDR after the first ``offset`` of [start, end], in download order."""
    return (
        select(cdr.c.ts)
        .where(cdr.c.ts.between(bindparam("start"), bindparam("end")))
        .order_by(cdr.c.ts, cdr.c.callid, cdr.c.sn)
        .limit(1)
        .offset(bindparam("offset", type_=Integer))
    )


def _fetch_utf8(
    conn: Connection, query: CdrQuery, limit: int | None, timed: bool = False
) -> Sequence[Sequence[Any]]:
    """The rows of ``query`` in download order, the first column (the line) as UTF-8 bytes."""
    params = _params(query, None, limit)
    stmt = _template(query, None, limit, False, timed, _by_rowid(conn))
    if conn.dialect.name != "sqlite":
        # Not convert_to(line, 'UTF8') in SQL: a bytea comes hex-encoded in the text protocol,
        # twice the result libpq holds, and decoding it cost more CPU than encode (measured).
        return [(row[0].encode(), *row[1:]) for row in _fetch(conn, stmt, params)]
    raw = sqlite_driver(conn)
    assert raw is not None
    with _text_as_bytes(raw):
        return _fetch(conn, stmt, params)


@contextmanager
def _text_as_bytes(raw: sqlite3.Connection) -> Iterator[None]:
    """Text columns come as SQLite holds them, UTF-8 bytes, while the block runs: lines are
    sent as they are, not decoded to str and encoded back (a fifth of a full export's read)."""
    raw.text_factory = bytes
    try:
        yield
    finally:
        raw.text_factory = str


def read_keyed_lines(
    conn: Connection, query: CdrQuery, after: Key | None, limit: int
) -> list[tuple[str, str, str]]:
    """(line, callid, sn) of one second's CDRs after ``after``, for a second too full for
    one page."""
    assert query.start_ts == query.end_ts, "keys order CDRs within one second only"
    stmt = _template(query, after, limit, True, by_rowid=_by_rowid(conn))
    return [(row[0], row[1], row[2]) for row in _fetch(conn, stmt, _params(query, after, limit))]


def _template(
    query: CdrQuery,
    after: Key | None,
    limit: int | None,
    keyed: bool,
    timed: bool = False,
    by_rowid: bool = False,
) -> Select[Any]:
    by_extension = query.extensions is not None
    scope = None if by_extension else query.scope
    has_after, limited = after is not None, limit is not None
    return _statement(by_extension, has_after, limited, keyed, scope, timed, by_rowid)


def _by_rowid(conn: Connection) -> bool:
    """Whether an extension's rows are read by their ids (``_statement``): on SQLite."""
    return conn.dialect.name == "sqlite"


def _params(query: CdrQuery, after: Key | None, limit: int | None) -> dict[str, Any]:
    params: dict[str, Any] = {"start": query.start_ts, "end": query.end_ts}
    if query.extensions is not None:
        params["exts"] = list(query.extensions)
    if after is not None:
        params["after_callid"], params["after_sn"] = after
    if limit is not None:
        params["limit"] = limit
    return params


@lru_cache(maxsize=1024)
def _statement(
    by_extension: bool,
    after: bool,
    limited: bool,
    keyed: bool,
    scope: Scope | None,
    timed: bool,
    by_rowid: bool,
) -> Select[Any]:
    """The export query of one shape, with its values as bound parameters (``_params``).

    Built once per shape (16, times each scoped account's scope): building and
    caching-keying a fresh statement cost more than running it for a small download (about
    0.75 ms against 0.1 ms). A scope's values are part of its statement, not parameters.

    A CDR matches an extension when it is the caller or the callee. Each side is its own
    index range scan ((callfrom, ts) and (callto, ts)); UNION merges them without duplicates.
    ``by_rowid`` (SQLite): each side scans its index alone (covering: the row id is in it) and
    yields row ids; ``id IN`` makes them a set, and each row is then read by its id. The UNION
    of whole rows put every row's line in a temp B-tree to drop duplicates, then sorted again
    (bench/RESULTS.md, eleventh round; a small download's read on the driver has since
    become ``_either_side``'s MULTI-INDEX OR, the paged reads keep this form). Not on
    PostgreSQL: there the outer read, with no ts condition, is not pruned to the range's
    monthly partitions. A scope (``extid=all`` of a scoped account) is matched the same way.
    ``after`` (for a one-second query) starts after that key; ``keyed`` adds callid and sn,
    ``timed`` adds ts.
    """
    where: list[ColumnElement[bool]] = [cdr.c.ts.between(bindparam("start"), bindparam("end"))]
    if after:
        key = tuple_(bindparam("after_callid", type_=String), bindparam("after_sn", type_=String))
        where.append(tuple_(cdr.c.callid, cdr.c.sn) > key)
    order = (cdr.c.ts, cdr.c.callid, cdr.c.sn)
    if not by_extension and scope is None:
        source: Any = cdr.c
        extra = order[1:] if keyed else order[:1] if timed else ()
        stmt = select(cdr.c.line, *extra).where(*where)
    else:
        exts: BindParameter[str] = bindparam("exts", expanding=True)
        parts = [
            select(cdr.c.id if by_rowid else cdr.c.line, *(() if by_rowid else order)).where(
                *where, column.in_(exts) if scope is None else scope.matches(column)
            )
            for column in (cdr.c.callfrom, cdr.c.callto)
        ]
        if by_rowid:
            # Never correlated: each side scans cdr on its own, not the outer query's row.
            ids = union_all(*(part.correlate(None) for part in parts))
            source = cdr.c
            stmt = select(cdr.c.line).where(cdr.c.id.in_(ids))
        else:
            source = union(*parts).subquery().c
            stmt = select(source.line)
        extra = (source.callid, source.sn) if keyed else (source.ts,) if timed else ()
        stmt = stmt.add_columns(*extra)
    stmt = stmt.order_by(source.ts, source.callid, source.sn)
    return stmt.limit(bindparam("limit", type_=Integer)) if limited else stmt


def _fetch(conn: Connection, stmt: Select[Any], params: dict[str, Any]) -> Sequence[Sequence[Any]]:
    # The export hot path: SQLAlchemy executes (with its compiled-statement cache), then rows
    # come straight from the driver cursor as plain tuples, without per-row result processing
    # (half the server's CPU on a full export on SQLite); no column here needs processing.
    result = conn.execute(stmt, params)
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


def count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(cdr)).scalar_one())
