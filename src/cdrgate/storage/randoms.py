"""The ``cdr_random`` table: one-time download keys.

Redeeming is a single conditional UPDATE (``used_ms IS NULL`` and not expired), so exactly one
of any number of concurrent downloads wins, in one process or many, on either engine.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, bindparam, delete, select, update

from cdrgate.storage.tables import cdr_random

# Used and expired randoms are kept a little while for diagnosis, then purged.
SPENT_KEEP_MS = 3600 * 1000


# A flow runs each of these once: built once, executed with parameters (building a
# statement costs several times what executing it does; see bench/RESULTS.md).
_CREATE = cdr_random.insert()
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


def create(conn: Connection, **values: Any) -> None:
    conn.execute(_CREATE, values)


def find(conn: Connection, random_hash: str) -> Row[Any] | None:
    return conn.execute(_FIND, {"hash": random_hash}).first()


def redeem(conn: Connection, random_hash: str, now_ms: int) -> bool:
    """Mark the random used if it is still unused and unexpired; True if this call won."""
    return conn.execute(_REDEEM, {"hash": random_hash, "now": now_ms}).rowcount == 1


def purge(conn: Connection, now_ms: int) -> int:
    cutoff = now_ms - SPENT_KEEP_MS
    return conn.execute(delete(cdr_random).where(cdr_random.c.expires_ms < cutoff)).rowcount
