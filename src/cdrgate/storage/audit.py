"""The ``download_audit`` table: one row per download attempt, successful or not."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Row, bindparam, delete, select, update

from cdrgate.storage.driver import HotStatement, SqliteStatement
from cdrgate.storage.tables import download_audit

# One per download: built once (see storage/randoms.py), run on the driver. Every column but
# the id: a record gives them all. The id: SQLite's rowid, PostgreSQL's RETURNING.
_COLUMNS = tuple(column.key for column in download_audit.c if column.key != "id")
_INSERT = HotStatement(
    download_audit.insert(),
    SqliteStatement.of(download_audit.insert(), column_keys=_COLUMNS),
    download_audit.insert().returning(download_audit.c.id),
    _COLUMNS,
)
_SETTLE = (
    update(download_audit)
    .where(download_audit.c.id == bindparam("row_id"))
    .values(outcome=bindparam("outcome"), rows=bindparam("rows"), bytes=bindparam("size"))
)


def insert(conn: Connection, values: Mapping[str, Any]) -> int:
    """Add one record (every column but ``id``); returns its id."""
    return _INSERT.inserted_id(conn, values)


def settle(conn: Connection, row_id: int, outcome: str, rows: int, size: int) -> None:
    """Correct a record written before its download ended (see services/audit.py)."""
    conn.execute(_SETTLE, {"row_id": row_id, "outcome": outcome, "rows": rows, "size": size})


def query(
    conn: Connection,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    account: str | None = None,
    client_ip: str | None = None,
    outcome: str | None = None,
    limit: int = 100,
) -> list[Row[Any]]:
    """The newest matching records first, at most ``limit``."""
    a = download_audit.c
    stmt = select(download_audit)
    if since_ms is not None:
        stmt = stmt.where(a.at_ms >= since_ms)
    if until_ms is not None:
        stmt = stmt.where(a.at_ms <= until_ms)
    if account is not None:
        stmt = stmt.where(a.account == account)
    if client_ip is not None:
        stmt = stmt.where(a.client_ip == client_ip)
    if outcome is not None:
        stmt = stmt.where(a.outcome == outcome)
    return list(conn.execute(stmt.order_by(a.at_ms.desc(), a.id.desc()).limit(limit)))


def purge(conn: Connection, before_ms: int) -> int:
    return conn.execute(delete(download_audit).where(download_audit.c.at_ms < before_ms)).rowcount
