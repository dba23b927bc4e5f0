"""Aggregates over the cdr table for ``cdrgate stats``: counts only, never rows."""

from __future__ import annotations

from sqlalchemy import Connection, func, literal_column, select, union_all

from cdrgate.storage.tables import cdr

# Which party of a call is ours, by its type: the caller of an outbound call, the callee of
# an inbound one, both of an internal one.
_CALLER_IS_OURS = ("Outbound", "Internal")
_CALLEE_IS_OURS = ("Inbound", "Internal")


def span(conn: Connection) -> tuple[int, int | None, int | None]:
    """Row count and the first and last ``ts`` (None when the table is empty)."""
    row = conn.execute(select(func.count(), func.min(cdr.c.ts), func.max(cdr.c.ts))).one()
    return int(row[0]), row[1], row[2]


def counts_by(conn: Connection, column: str) -> dict[str, int]:
    col = cdr.c[column]
    rows = conn.execute(select(col, func.count()).group_by(col).order_by(col))
    return {str(value): int(count) for value, count in rows}


def extension_calls(conn: Connection) -> list[tuple[str, int]]:
    """Calls per extension (our party of each call), most calls first."""
    ours = union_all(
        select(cdr.c.callfrom.label("ext")).where(cdr.c.type.in_(_CALLER_IS_OURS)),
        select(cdr.c.callto.label("ext")).where(cdr.c.type.in_(_CALLEE_IS_OURS)),
    ).subquery()
    calls = func.count().label("calls")
    query = (
        select(ours.c.ext, calls)
        .where(ours.c.ext != literal_column("''"))
        .group_by(ours.c.ext)
        .order_by(calls.desc(), ours.c.ext)
    )
    return [(str(ext), int(count)) for ext, count in conn.execute(query)]
