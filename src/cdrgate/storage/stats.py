"""Aggregates for ``cdrgate stats``: counts only, never rows.

The row count and the counts per type and per status come from ``cdr_summary``, which every
write of ``cdr`` keeps in step (storage/summary.py) and which holds them exactly: a few
thousand rows a year instead of every CDR. Calls per extension are not in it (it has no
party column), so they are still counted over the cdr table.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import Connection, func, literal_column, select, union_all

from cdrgate.storage.tables import cdr, cdr_summary

# Which party of a call is ours, by its type: the caller of an outbound call, the callee of
# an inbound one, both of an internal one.
_CALLER_IS_OURS = ("Outbound", "Internal")
_CALLEE_IS_OURS = ("Inbound", "Internal")


def span(conn: Connection) -> tuple[int, int | None, int | None]:
    """Row count and the first and last ``ts`` (None when the table is empty)."""
    count = conn.execute(select(func.coalesce(func.sum(cdr_summary.c.calls), 0))).scalar_one()
    # One aggregate per statement: alone, min() and max() are read from an end of the ts
    # index (both engines); together with anything else they scan the table.
    first = conn.execute(select(func.min(cdr.c.ts))).scalar_one()
    last = conn.execute(select(func.max(cdr.c.ts))).scalar_one()
    return int(count), first, last


def counts_by(conn: Connection, column: Literal["type", "status"]) -> dict[str, int]:
    col = cdr_summary.c[column]
    calls = func.sum(cdr_summary.c.calls)
    # Rows whose counts fell to zero stay in cdr_summary; a value with no call left is gone.
    rows = conn.execute(select(col, calls).group_by(col).having(calls > 0).order_by(col))
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
