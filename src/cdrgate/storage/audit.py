"""The ``download_audit`` table: one row per download attempt, successful or not."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    String,
    bindparam,
    delete,
    exists,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import postgresql

from cdrgate.storage import randoms
from cdrgate.storage.driver import HotStatement, SqliteStatement
from cdrgate.storage.randoms import RandomRow
from cdrgate.storage.tables import cdr_random, download_audit

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


# How long ``write_under`` and ``fail_spent`` wait for the lost write to end (a COMMIT still on
# its way, or a backend that has not yet noticed its client is gone) before giving up: it is
# then audited as one whose check failed (services/audit.py).
LOST_WRITE_WAIT = "5s"


def _bound_wait(conn: Connection) -> None:
    conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOST_WRITE_WAIT}'")


# The columns a spend's record is found by once its connection was lost (``fail_spent``):
# what the attempt gave it, not what the statement computed (account, rows, bytes).
_SPENT_KEYS = ("at_ms", "client_ip", "api_version", "selector", "starttime", "endtime", "kind")


def fail_spent(
    conn: Connection, spent: RandomRow, record: Mapping[str, Any], failed: Mapping[str, Any]
) -> bool:
    """A spend of the random ``spent`` (its row as sent, ``used_ms`` set) with the audit
    ``record`` (as sent) in one PostgreSQL statement (``storage/signed_spend.py``,
    ``storage/session_spend.py``), whose connection was lost before its answer came: if it
    committed, its record is corrected to ``failed``'s outcome, errno, rows and bytes and True
    is returned; False when it did not (nothing written).

    Committed is: the random's row is there, spent at ``spent.used_ms`` by ``spent``'s token,
    and a record with ``record``'s keys (its time, address, version, filter, kind), outcome
    and errno was written by the same transaction (the rows' ``xmin``): the one statement
    wrote both. The keys alone do not tell it from an earlier download of the same range in
    the same millisecond; the random alone does not tell which record went with it.

    A statement still running that spends it (its backend not yet aware its client is gone)
    is waited for first, as ``write_under`` waits: the random's row inserted again, which
    waits for the transaction that inserted that key to end (the primary key's rule), then
    undone (a savepoint), so a spend that never committed leaves the random unspent."""
    _bound_wait(conn)
    savepoint = conn.begin_nested()
    randoms.spend_signed(conn, spent)
    savepoint.rollback()
    params = _fail_spent_params(spent, record, failed)
    return conn.execute(_fail_spent(), params).first() is not None


# What a record found by ``fail_spent`` or ``write_under`` is corrected to: the new one's.
_CORRECTED = ("outcome", "errno", "rows", "bytes")


@cache
def _fail_spent() -> Any:
    """Built on first use (PostgreSQL only: ``xmin`` is its system column)."""
    a = download_audit.c
    r = cdr_random.c
    # The transaction that inserted each row: one statement wrote the random's and the record.
    same_writer = literal_column("cdr_random.xmin") == literal_column("download_audit.xmin")
    committed = exists().where(
        r.expires_ms == bindparam("expires_ms"),
        r.random_hash == bindparam("random_hash"),
        r.token_hash == bindparam("token_hash"),
        r.used_ms == bindparam("used_ms"),
        same_writer,
    )
    return (
        update(download_audit)
        .where(
            *(a[key] == bindparam("k_" + key) for key in _SPENT_KEYS),
            a.outcome == bindparam("k_outcome"),
            a.errno.is_not_distinct_from(bindparam("k_errno", type_=String)),
            committed,
        )
        .values({key: bindparam("v_" + key) for key in _CORRECTED})
        .returning(a.id)
    )


def write_under(conn: Connection, record_id: int, record: Mapping[str, Any]) -> None:
    """A write transaction that wrote an audit record under ``record_id`` (PostgreSQL) lost its
    connection before its COMMIT's answer came: ``record`` (every column but ``id``) is
    written under that id, in one statement, whether the transaction committed or not.
    Committed, its record is corrected to ``record``'s outcome, errno, rows and bytes (a
    lost spend's attempt audited as failed; a record written again, the same); not,
    ``record`` is written with that id.

    The id came from the sequence in that transaction and is never handed out again, so no
    other record can hold it; and the insert of an id that a transaction still running has
    written waits for that transaction to end (a unique index's rule) before it decides, so
    a COMMIT still on its way cannot land a second record after this one (at most
    ``LOST_WRITE_WAIT``: then this raises, and nothing is written)."""
    _bound_wait(conn)
    conn.execute(_write_under(), {"id": record_id, **record})


@cache
def _write_under() -> Any:
    """Built on first use (PostgreSQL only)."""
    upsert = postgresql.insert(download_audit)
    return upsert.on_conflict_do_update(
        index_elements=[download_audit.c.id],
        set_={key: upsert.excluded[key] for key in _CORRECTED},
    )


def _fail_spent_params(
    spent: RandomRow, record: Mapping[str, Any], failed: Mapping[str, Any]
) -> dict[str, Any]:
    keys = {"k_" + key: record[key] for key in (*_SPENT_KEYS, "outcome", "errno")}
    values = {"v_" + key: failed[key] for key in _CORRECTED}
    return {
        "expires_ms": spent.expires_ms, "random_hash": spent.random_hash,
        "token_hash": spent.token_hash, "used_ms": spent.used_ms, **keys, **values,
    }  # fmt: skip


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
