"""Which CDRs a retention policy removes, and removing them in bounded batches."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, delete, false, func, or_, select, tuple_

from cdrgate.storage.tables import cdr

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
    ids = select(cdr.c.id).where(where).limit(limit).scalar_subquery()
    return int(conn.execute(delete(cdr).where(cdr.c.id.in_(ids))).rowcount)
