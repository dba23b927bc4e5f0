"""The ``cdr_random`` table: one-time download keys.

Redeeming is a single conditional UPDATE (``used_ms IS NULL`` and not expired), so exactly one
of any number of concurrent downloads wins, in one process or many, on either engine.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, delete, select, update

from cdrgate.storage.driver import HotStatement
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
_CREATE = HotStatement.of(cdr_random.insert(), column_keys=RandomRow._fields)
_FIND = HotStatement.of(select(cdr_random).where(cdr_random.c.random_hash == bindparam("hash")))
_REDEEM = HotStatement.of(
    update(cdr_random)
    .where(
        cdr_random.c.random_hash == bindparam("hash"),
        cdr_random.c.used_ms.is_(None),
        cdr_random.c.expires_ms > bindparam("now"),
    )
    .values(used_ms=bindparam("now"))
)


def create(conn: Connection, **values: Any) -> None:
    """Store a new random: every column but ``used_ms`` given."""
    _CREATE.rowcount(conn, {"used_ms": None, **values})


def find(conn: Connection, random_hash: str) -> RandomRow | None:
    row = _FIND.first(conn, {"hash": random_hash})
    return None if row is None else RandomRow._make(row)


def redeem(conn: Connection, random_hash: str, now_ms: int) -> bool:
    """Mark the random used if it is still unused and unexpired; True if this call won."""
    return _REDEEM.rowcount(conn, {"hash": random_hash, "now": now_ms}) == 1


def purge(conn: Connection, now_ms: int) -> int:
    cutoff = now_ms - SPENT_KEEP_MS
    return conn.execute(delete(cdr_random).where(cdr_random.c.expires_ms < cutoff)).rowcount
