"""Which CDRs a retention policy removes, and removing them in bounded batches."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import ColumnElement, Connection, delete, false, func, or_, select, text, tuple_

from cdrgate.storage.db import Database
from cdrgate.storage.summary import subtract_ids
from cdrgate.storage.tables import cdr

RUN_LOCK_KEY = 0x63647272  # pg_try_advisory_lock key of a retention run ("cdrr")

_ORDER = (cdr.c.ts, cdr.c.callid, cdr.c.sn)  # the download order; "newest" is its end


def newest_to_remove(conn: Connection, keep: int) -> tuple[Any, ...] | None:
    """The newest row beyond the ``keep`` newest, as (ts, callid, sn); None if none is."""
    row = conn.execute(
        select(*_ORDER).order_by(*(column.desc() for column in _ORDER)).limit(1).offset(keep)
    ).first()
    return tuple(row) if row is not None else None


def condition(cutoff_ts: int | None, boundary: tuple[Any, ...] | None) -> ColumnElement[bool]:
    """Rows older than ``cutoff_ts`` or at/below ``boundary`` in download order."""
    parts: list[ColumnElement[bool]] = []
    if cutoff_ts is not None:
        parts.append(cdr.c.ts < cutoff_ts)
    if boundary is not None:
        parts.append(tuple_(*_ORDER) <= tuple_(*boundary))
    return or_(*parts) if parts else false()


def summary(conn: Connection, where: ColumnElement[bool]) -> tuple[int, int | None, int | None]:
    """How many rows match, and the first and last of their ``ts``."""
    count, low, high = conn.execute(
        select(func.count(), func.min(cdr.c.ts), func.max(cdr.c.ts)).where(where)
    ).one()
    return int(count), low, high


def delete_batch(conn: Connection, where: ColumnElement[bool], limit: int) -> int:
    # The ids are read once so that cdr_summary loses exactly the rows deleted.
    ids = list(conn.execute(select(cdr.c.id).where(where).limit(limit)).scalars())
    subtract_ids(conn, ids)
    return int(conn.execute(delete(cdr).where(cdr.c.id.in_(ids))).rowcount) if ids else 0


@contextmanager
def run_alone(db: Database) -> Iterator[bool]:
    """Whether this process may run retention now: on PostgreSQL, only while it holds the
    cluster-wide advisory lock (nodes and workers would otherwise delete the same rows
    concurrently, each blocking on the other's row locks). SQLite has one host: always."""
    if db.is_sqlite:
        yield True
        return
    with db.connect() as conn:
        # A session lock, not a transaction's: a run is many transactions on other connections.
        got = bool(
            conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": RUN_LOCK_KEY}).scalar()
        )
        conn.commit()
        try:
            yield got
        finally:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": RUN_LOCK_KEY})
                conn.commit()
