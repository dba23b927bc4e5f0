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
from cdrgate.storage.summary_sql import ADD, ADD_TALLY, COUNTS, INSERT, UPSERT
from cdrgate.storage.summary_sql import Tally as Tally
from cdrgate.storage.summary_sql import add_counted_sql as add_counted_sql
from cdrgate.storage.summary_sql import add_every_row_sql as add_every_row_sql
from cdrgate.storage.summary_sql import count_into_sql as count_into_sql
from cdrgate.storage.summary_sql import merge_tally as merge_tally
from cdrgate.storage.summary_sql import tally_into_sql as tally_into_sql
from cdrgate.storage.summary_sql import tally_is_exact as tally_is_exact
from cdrgate.storage.summary_sql import tally_rows as tally_rows
from cdrgate.storage.tables import CDR_ID_SEQUENCE, cdr
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


# PostgreSQL asks the id sequence, not the table: a lock on cdr
# taken in this transaction would block the month partitions that its inserts may create
# (partitions.ensure, on another connection).
_NEWEST_PG = text(f"SELECT coalesce(pg_sequence_last_value('{CDR_ID_SEQUENCE}'::regclass), 0)")


def newest_id(conn: Connection) -> int:
    """An id at least as high as any stored or handed out now (0 when none): rows inserted
    after this have higher ids."""
    if conn.dialect.name == "postgresql":
        return int(conn.execute(_NEWEST_PG).scalar_one())
    return int(conn.execute(select(func.coalesce(func.max(cdr.c.id), 0))).scalar_one())


@cache
def _add_stored(dialect: str) -> TextClause:
    return text(UPSERT.format(sign="", source="cdr", where=_MINE[dialect]))


def add_stored(conn: Connection, after_id: int) -> None:
    """Count the rows this transaction stored with ids above ``after_id``."""
    conn.execute(_add_stored(conn.dialect.name), {"after": after_id})


@cache
def _subtract_ids() -> TextClause:
    where = "id IN :ids"
    return text(UPSERT.format(sign="-", source="cdr", where=where)).bindparams(
        bindparam("ids", expanding=True)
    )


def subtract_ids(conn: Connection, ids: Sequence[int]) -> None:
    """Uncount the stored rows ``ids``, before they are deleted in the same transaction."""
    if ids:
        conn.execute(_subtract_ids(), {"ids": list(ids)})


def subtract_table(conn: Connection, table: str) -> None:
    """Uncount every row of ``table`` (a PostgreSQL partition of cdr about to be dropped)."""
    conn.exec_driver_sql(UPSERT.format(sign="-", source=table, where="true"))


def count_into(conn: Connection, source: str, target: str) -> None:
    """Create the table ``target`` holding the cdr_summary counts of the CDR-shaped table
    ``source`` (to be added later with ``add_counted``)."""
    conn.exec_driver_sql(count_into_sql(source, target))


def add_counted(conn: Connection, table: str) -> None:
    """Add the counts of ``table`` (made by ``count_into``) to cdr_summary."""
    conn.exec_driver_sql(add_counted_sql(table))


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
        ADD_TALLY,
        [
            (hours[hour], status, type_, *tally[hour, status, type_])
            for hour, status, type_ in sorted(tally)
        ],
    )


def add_table(conn: Connection, table: str) -> None:
    """Count every row of ``table`` (PostgreSQL: a month loaded apart, about to become a
    partition of cdr: storage/pg_months.py)."""
    conn.exec_driver_sql(UPSERT.format(sign="", source=table, where="true"))


def add_table_new(conn: Connection, table: str) -> None:
    """``add_table`` for the rows of hours cdr_summary holds no row of (PostgreSQL: a seeded
    month): a plain INSERT, without the upsert's speculative insertion (~25 % less CPU,
    bench/RESULTS.md, twentieth round). Raises a unique violation when it holds one."""
    conn.exec_driver_sql(INSERT.format(select=COUNTS.format(sign="", source=table, where="true")))


def insert_counted(conn: Connection, insert: str) -> int:
    """Run ``insert`` (PostgreSQL: an INSERT INTO cdr with ON CONFLICT DO NOTHING) and count
    the rows it stored; returns how many it stored."""
    stored = "RETURNING ts, status, type, talkduraction, callduraction"
    counts = COUNTS.format(sign="", source="stored", where="true")
    sql = (
        f"WITH stored AS ({insert} ON CONFLICT DO NOTHING {stored}), "
        f"counted AS ({ADD.format(select=counts)}) SELECT count(*) FROM stored"
    )
    return int(conn.exec_driver_sql(sql).scalar_one())
