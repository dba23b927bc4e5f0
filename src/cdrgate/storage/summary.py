"""``cdr_summary``: calls and seconds per hour x status x type, kept in step with ``cdr``.

Long-range statistics read it instead of every CDR (storage/query.py decides when it can
answer). Every write of ``cdr`` keeps it in the same transaction, set-wise:

- inserts: ``Inserter`` notes the newest id before its first insert and, when it flushes,
  adds the rows stored since (``add_stored``): one INSERT ... SELECT ... GROUP BY ... ON
  CONFLICT per flush, so a duplicate skipped by ON CONFLICT DO NOTHING is never counted.
  A batch whose rows were counted while they were read (a ``Tally``: the Yeastar fast path)
  and all stored is added from its tally instead (``add_tally``), without reading them back;
- deletes: ``subtract`` the rows about to go (retention batches, dropped PG partitions).

The hour is ``ts / 3600 * 3600`` in SQL (integer division, as the raw statistics group
rows), so a day or weekday of hours is the same day or weekday as of the raw rows. Rows
whose counts fall to zero are left in place; readers skip them (``calls > 0``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from sqlalchemy import Connection, TextClause, bindparam, func, select, text

from cdrgate.storage.driver import sqlite_driver
from cdrgate.storage.tables import cdr
from cdrgate.timefmt import parse_pbx_time

HOUR_S = 3_600

# The rows of one id range that this transaction stored. On SQLite writers are serialised
# (BEGIN IMMEDIATE), so ids above the newest one seen inside the transaction are all its own.
# On PostgreSQL a concurrent writer's rows may commit with ids in the same range, so only the
# rows whose xmin is this transaction's count (every insert runs at the top level: partition
# savepoints are released before the rows go in).
_MINE = {
    "sqlite": "id > :after",
    "postgresql": "id > :after AND xmin = pg_current_xact_id()::xid",
}

_COUNTS = (
    "SELECT ts / 3600 * 3600 AS hour, status, type, {sign} count(*) AS calls, "
    "{sign} sum(talkduraction) AS talk, {sign} sum(callduraction) AS duration "
    "FROM {source} WHERE {where} GROUP BY ts / 3600 * 3600, status, type"
)
_ADD = (
    "INSERT INTO cdr_summary (hour, status, type, calls, talk, duration) {select} "
    "ON CONFLICT (hour, status, type) DO UPDATE SET "
    "calls = cdr_summary.calls + excluded.calls, talk = cdr_summary.talk + excluded.talk, "
    "duration = cdr_summary.duration + excluded.duration"
)
_UPSERT = _ADD.format(select=_COUNTS)
_ADD_TALLY = _ADD.format(select="VALUES (?, ?, ?, ?, ?, ?)")

# Rows counted as they were read: per (hour of timestart as "yyyy-mm-dd hh", status, type),
# [calls, talk seconds, call seconds].
Tally = dict[tuple[str, str, str], list[int]]


# PostgreSQL asks the id sequence (named by migration 0005), not the table: a lock on cdr
# taken in this transaction would block the month partitions that its inserts may create
# (partitions.ensure, on another connection).
_NEWEST_PG = text("SELECT coalesce(pg_sequence_last_value('cdr_id_seq'::regclass), 0)")


def newest_id(conn: Connection) -> int:
    """An id at least as high as any stored or handed out now (0 when none): rows inserted
    after this have higher ids."""
    if conn.dialect.name == "postgresql":
        return int(conn.execute(_NEWEST_PG).scalar_one())
    return int(conn.execute(select(func.coalesce(func.max(cdr.c.id), 0))).scalar_one())


@cache
def _add_stored(dialect: str) -> TextClause:
    return text(_UPSERT.format(sign="", source="cdr", where=_MINE[dialect]))


def add_stored(conn: Connection, after_id: int) -> None:
    """Count the rows this transaction stored with ids above ``after_id``."""
    conn.execute(_add_stored(conn.dialect.name), {"after": after_id})


@cache
def _subtract_ids() -> TextClause:
    where = "id IN :ids"
    return text(_UPSERT.format(sign="-", source="cdr", where=where)).bindparams(
        bindparam("ids", expanding=True)
    )


def subtract_ids(conn: Connection, ids: Sequence[int]) -> None:
    """Uncount the stored rows ``ids``, before they are deleted in the same transaction."""
    if ids:
        conn.execute(_subtract_ids(), {"ids": list(ids)})


def subtract_table(conn: Connection, table: str) -> None:
    """Uncount every row of ``table`` (a PostgreSQL partition of cdr about to be dropped)."""
    conn.exec_driver_sql(_UPSERT.format(sign="-", source=table, where="true"))


def count_into(conn: Connection, source: str, target: str) -> None:
    """Create the table ``target`` holding the cdr_summary counts of the CDR-shaped table
    ``source`` (to be added later with ``add_counted``)."""
    conn.exec_driver_sql(count_into_sql(source, target))


def count_into_sql(source: str, target: str) -> str:
    """``count_into``'s statement, for a connection of another process (a parallel import's
    child runs it on its part: ingest/part.py)."""
    counts = _COUNTS.format(sign="", source=source, where="true")
    return f"CREATE TABLE {target} AS {counts}"


def tally_into_sql(table: str) -> str:
    """An INSERT of a tally's rows, ``(hour as "yyyy-mm-dd hh", status, type, calls, talk,
    duration)``, into ``table`` (made by ``count_into``), for a connection of another process
    (a parallel import's child: ingest/part.py). The hour is turned into seconds as the fast
    path turns a time into ``ts`` (``unixepoch``); a tally's hours are from 1970 on
    (``tally_is_exact``), so they are the hours ``add_counted`` groups by."""
    return (
        f"INSERT INTO {table} (hour, status, type, calls, talk, duration) "
        "VALUES (unixepoch(?1 || ':00:00'), ?2, ?3, ?4, ?5, ?6)"
    )


def tally_rows(tally: Tally) -> list[tuple[str, str, str, int, int, int]]:
    """``tally`` as the rows ``tally_into_sql`` inserts."""
    return [
        (hour, status, type_, calls, talk, duration)
        for (hour, status, type_), (calls, talk, duration) in tally.items()
    ]


def add_counted(conn: Connection, table: str) -> None:
    """Add the counts of ``table`` (made by ``count_into``) to cdr_summary."""
    conn.exec_driver_sql(add_counted_sql(table))


def add_counted_sql(table: str) -> str:
    """``add_counted``'s statement, for a connection outside SQLAlchemy (a parallel import's
    writer in apsw: ingest/apsw_writer.py)."""
    # "WHERE true": SQLite would read ON CONFLICT as a join's ON without it.
    select = f"SELECT hour, status, type, calls, talk, duration FROM {table} WHERE true"
    return _ADD.format(select=select)


def add_every_row_sql() -> str:
    """The statement counting every row of ``cdr`` into cdr_summary: for a load into an empty
    store, whose rows are then all its own (ingest/apsw_writer.py)."""
    return _UPSERT.format(sign="", source="cdr", where="true")


def tally_is_exact(tally: Tally) -> bool:
    """Whether ``tally``'s hours are the ones SQL groups by. ``ts / 3600 * 3600`` truncates
    toward zero, so before 1970 (a negative ts) one clock hour's rows fall in two of its
    hours; those rows are left to ``add_stored``. Years are four digits (the time is checked
    before a tally is made), so text order is time order."""
    return all(hour >= "1970" for hour, _, _ in tally)


def merge_tally(into: Tally, tally: Tally) -> None:
    for key, (calls, talk, duration) in tally.items():
        counts = into.get(key)
        if counts is None:
            into[key] = [calls, talk, duration]
        else:
            counts[0] += calls
            counts[1] += talk
            counts[2] += duration


def add_tally(conn: Connection, tally: Tally) -> None:
    """Add the counts of stored rows counted as they were read (``tally_is_exact``).
    SQLite (only its fast path makes tallies): on the driver, as tens of thousands of rows
    through SQLAlchemy's parameter handling cost half a second for 1M CDRs."""
    if not tally:
        return
    raw = sqlite_driver(conn)
    assert raw is not None, "a tally is made on SQLite only"
    hours = {hour: parse_pbx_time(f"{hour}:00:00") for hour, _, _ in tally}
    # In key order: each upsert then lands beside the last one in cdr_summary's B-tree.
    raw.executemany(
        _ADD_TALLY,
        [
            (hours[hour], status, type_, *tally[hour, status, type_])
            for hour, status, type_ in sorted(tally)
        ],
    )


def add_table(conn: Connection, table: str) -> None:
    """Count every row of ``table`` (PostgreSQL: a month loaded apart, about to become a
    partition of cdr: storage/pg_months.py)."""
    conn.exec_driver_sql(_UPSERT.format(sign="", source=table, where="true"))


def insert_counted(conn: Connection, insert: str) -> int:
    """Run ``insert`` (PostgreSQL: an INSERT INTO cdr with ON CONFLICT DO NOTHING) and count
    the rows it stored; returns how many it stored."""
    stored = "RETURNING ts, status, type, talkduraction, callduraction"
    counts = _COUNTS.format(sign="", source="stored", where="true")
    sql = (
        f"WITH stored AS ({insert} ON CONFLICT DO NOTHING {stored}), "
        f"counted AS ({_ADD.format(select=counts)}) SELECT count(*) FROM stored"
    )
    return int(conn.exec_driver_sql(sql).scalar_one())
