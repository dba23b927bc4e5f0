"""Bulk CDR insert on PostgreSQL: COPY into a staging table, then one INSERT ... SELECT.

COPY streams a whole batch in one round trip; the INSERT from the staging table then applies
the duplicate rule (ON CONFLICT DO NOTHING) set-wise and reports how many rows were new.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from cdrgate.storage import partitions

STAGE = "cdr_stage"


def copy_rows(conn: Connection, columns: Sequence[str], rows: Sequence[tuple[object, ...]]) -> int:
    """Insert ``rows`` (tuples in ``columns`` order) into ``cdr``; returns how many were new."""
    # Rows come from cdrs.row_values, which has already dropped NUL (PostgreSQL text can't).
    ts_at = list(columns).index("ts")
    partitions.ensure(conn.engine, (int(row[ts_at]) for row in rows))  # type: ignore[call-overload]
    names = ", ".join(columns)
    # Dropped at commit, so pooled connections never carry it over; emptied per batch.
    conn.exec_driver_sql(
        f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} ON COMMIT DROP AS "
        f"SELECT {names} FROM cdr WITH NO DATA"
    )
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(f"TRUNCATE {STAGE}")
        with cursor.copy(f"COPY {STAGE} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(
            f"INSERT INTO cdr ({names}) SELECT {names} FROM {STAGE} ON CONFLICT DO NOTHING"
        )
        return max(int(cursor.rowcount), 0)
    finally:
        cursor.close()
