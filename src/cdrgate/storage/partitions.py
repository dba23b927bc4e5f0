"""Monthly partitions of the ``cdr`` table on PostgreSQL (SQLite keeps one plain table).

Partition ``cdr_pYYYYMM`` holds the CDRs whose ``ts`` falls in that calendar month; retention
then drops whole months instead of deleting millions of rows. ``cdr_default`` catches rows of
months that have no partition yet, so an insert never fails. Writers call :func:`ensure` before
inserting; it creates missing months in its own short transaction (``ATTACH PARTITION`` only
takes a SHARE UPDATE EXCLUSIVE lock on ``cdr``, so downloads keep running), and moves any rows
of that month out of the default partition. See docs/storage.md for the reasoning.
"""

from __future__ import annotations

import calendar
import logging
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    Text,
    cast,
    column,
    literal_column,
    select,
    table,
    text,
)
from sqlalchemy.exc import OperationalError

from cdrgate.storage import summary

log = logging.getLogger("cdrgate.storage")

DEFAULT_PARTITION = "cdr_default"
# pg_advisory_xact_lock key serialising partition DDL across processes ("cdrp").
DDL_LOCK_KEY = 0x63647270
# Attaching waits for a lock on the default partition; a long download holds one. Rather than
# queue (and make every later query queue behind us), give up quickly: rows then land in the
# default partition and move to their month the next time it is ensured.
DDL_LOCK_TIMEOUT = "1s"
LOCK_NOT_AVAILABLE = "55P03"
_NAME_RE = re.compile(r"cdr_p(\d{4})(\d{2})")


def month_start(ts: int) -> int:
    """The first second of the calendar month containing wall-clock second ``ts``."""
    t = time.gmtime(ts)
    return calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0, 0, 0, 0))


def next_month(start: int) -> int:
    t = time.gmtime(start)
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return calendar.timegm((year, month, 1, 0, 0, 0, 0, 0, 0))


def partition_name(start: int) -> str:
    return time.strftime("cdr_p%Y%m", time.gmtime(start))


def is_month_name(name: str) -> bool:
    """Whether ``name`` is a monthly partition's, as ``partition_name`` makes them."""
    return _NAME_RE.fullmatch(name) is not None


def names() -> Select[Any]:
    """The names of ``cdr``'s partitions (its default one too), from the catalog: read here
    and, as one array, by the event loop's statements (``storage/day_months.py``)."""
    inherits = table("pg_inherits", column("inhrelid"), column("inhparent"))
    pg_class: Any = table("pg_class", column("oid"), column("relname"))
    return (
        select(cast(pg_class.c.relname, Text).label("name"))
        .select_from(inherits.join(pg_class, pg_class.c.oid == inherits.c.inhrelid))
        .where(inherits.c.inhparent == literal_column("'cdr'::regclass"))
    )


def existing(conn: Connection) -> dict[str, int]:
    """The monthly partitions of ``cdr``: name -> first second of the month."""
    found = {}
    for name in conn.execute(names()).scalars():
        if match := _NAME_RE.fullmatch(name):
            year, month = int(match[1]), int(match[2])
            found[name] = calendar.timegm((year, month, 1, 0, 0, 0, 0, 0, 0))
    return found


def ensure(engine: Engine, ts_values: Iterable[int]) -> None:
    """Create the monthly partitions the given times need (PostgreSQL; no-op elsewhere).

    Runs on its own connection and commits at once, so the caller's (possibly long) import
    transaction never holds partition DDL locks.
    """
    if engine.dialect.name != "postgresql":
        return
    months = {month_start(int(ts)) for ts in ts_values}
    with engine.begin() as conn:
        if not months - set(existing(conn).values()):
            return
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": DDL_LOCK_KEY})
        # Another process may have created some while we waited for the lock.
        for start in sorted(months - set(existing(conn).values())):
            create_month(conn, start)


def run_ddl(conn: Connection, statements: Sequence[str]) -> None:
    """Run ``statements`` (DDL on ``cdr`` and its partitions) in a savepoint, each lock
    waited for at most ``DDL_LOCK_TIMEOUT``; on an error the savepoint is rolled back (the
    transaction goes on as before them) and the error raised."""
    with conn.begin_nested():
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'")
        for statement in statements:
            conn.exec_driver_sql(statement)
        conn.exec_driver_sql("SET LOCAL lock_timeout = DEFAULT")


def create_month(conn: Connection, start: int) -> None:
    name, end = partition_name(start), next_month(start)
    in_month = f"ts >= {start} AND ts < {end}"
    try:
        run_ddl(
            conn,
            [
                f"CREATE TABLE {name} (LIKE cdr INCLUDING DEFAULTS)",
                f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE {in_month} RETURNING *) "
                f"INSERT INTO {name} SELECT * FROM moved",
                f"ALTER TABLE cdr ATTACH PARTITION {name} FOR VALUES FROM ({start}) TO ({end})",
            ],
        )
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        log.info(
            "partition %s not created now (table busy); rows go to %s", name, DEFAULT_PARTITION
        )


def drop_months_before(conn: Connection, cutoff_ts: int) -> tuple[int, int]:
    """Retention fast path: drop the monthly partitions wholly before ``cutoff_ts``.

    Dropping a month is a catalog change (no row-by-row DELETE, no WAL per row, no vacuum
    debt). Rows of the partial month and of ``cdr_default`` are left to the ordinary
    ``DELETE ... WHERE ts < cutoff``. Returns (months dropped, months busy); (0, 0) on SQLite.

    ``DROP TABLE`` of a partition needs an ACCESS EXCLUSIVE lock on ``cdr`` itself, and while
    it waits for one, every later query of ``cdr`` (downloads, pushes) queues behind it. So
    each drop waits at most ``DDL_LOCK_TIMEOUT``; a busy month is left for the next run.
    """
    if conn.dialect.name != "postgresql":
        return 0, 0
    dropped = busy = 0
    for name, start in sorted(existing(conn).items(), key=lambda item: item[1]):
        if next_month(start) > cutoff_ts:
            continue
        savepoint = conn.begin_nested()
        try:
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'")
            # Uncounted inside the savepoint (a busy month, rolled back, keeps its counts),
            # with inserts into the month held off until the drop: none goes uncounted.
            conn.exec_driver_sql(f"LOCK TABLE {name} IN SHARE MODE")
            summary.subtract_table(conn, name)
            conn.exec_driver_sql(f"DROP TABLE {name}")
            conn.exec_driver_sql("SET LOCAL lock_timeout = DEFAULT")
            savepoint.commit()
            dropped += 1
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            savepoint.rollback()
            busy += 1
            log.info("partition %s not dropped now (table busy); next retention run", name)
    return dropped, busy
