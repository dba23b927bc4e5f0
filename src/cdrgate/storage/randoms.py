"""The ``cdr_random`` table: one-time download keys.

Redeeming is a single conditional UPDATE (``used_ms IS NULL`` and not expired), so exactly one
of any number of concurrent downloads wins, in one process or many, on either engine.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, delete, select, update

from cdrgate.storage.driver import SqliteStatement, sqlite_driver
from cdrgate.storage.tables import cdr_random

# Used and expired randoms are kept a little while for diagnosis, then purged.
SPENT_KEEP_MS = 3600 * 1000


class RandomRow(NamedTuple):
    """A ``cdr_random`` row, in the table's column order."""

    random_hash: str
    token_hash: str
    selector: str
    start_ts: int
    end_ts: int
    client_ip: str
    allowed_ip: str | None
    expires_ms: int
    used_ms: int | None


# A flow runs each of these once: built once, executed with parameters (building a
# statement costs several times what executing it does; see bench/RESULTS.md), and on SQLite
# run on the driver from the same statement compiled once (storage/driver.py).
_CREATE = cdr_random.insert()
_CREATE_SQLITE = SqliteStatement.of(_CREATE, column_keys=RandomRow._fields)
_FIND = select(cdr_random).where(cdr_random.c.random_hash == bindparam("hash"))
_REDEEM = (
    update(cdr_random)
    .where(
        cdr_random.c.random_hash == bindparam("hash"),
        cdr_random.c.used_ms.is_(None),
        cdr_random.c.expires_ms > bindparam("now"),
    )
    .values(used_ms=bindparam("now"))
)
_FIND_SQLITE = SqliteStatement.of(_FIND)
_REDEEM_SQLITE = SqliteStatement.of(_REDEEM)


def create(conn: Connection, **values: Any) -> None:
    """Store a new random: every column but ``used_ms`` given."""
    values = {"used_ms": None, **values}
    raw = sqlite_driver(conn)
    if raw is None:
        conn.execute(_CREATE, values)
    else:
        _CREATE_SQLITE.run(raw, values)


def find(conn: Connection, random_hash: str) -> RandomRow | None:
    params = {"hash": random_hash}
    raw = sqlite_driver(conn)
    row = (
        conn.execute(_FIND, params).first()
        if raw is None
        else _FIND_SQLITE.run(raw, params).fetchone()
    )
    return None if row is None else RandomRow._make(row)


def redeem(conn: Connection, random_hash: str, now_ms: int) -> bool:
    """Mark the random used if it is still unused and unexpired; True if this call won."""
    params = {"hash": random_hash, "now": now_ms}
    raw = sqlite_driver(conn)
    if raw is None:
        return conn.execute(_REDEEM, params).rowcount == 1
    return _REDEEM_SQLITE.run(raw, params).rowcount == 1


def purge(conn: Connection, now_ms: int) -> int:
    cutoff = now_ms - SPENT_KEEP_MS
    return conn.execute(delete(cdr_random).where(cdr_random.c.expires_ms < cutoff)).rowcount
