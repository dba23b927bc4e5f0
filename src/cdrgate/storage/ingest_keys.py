"""The ``ingest_key`` table: credentials of the sources that push NewCdr events."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import Connection, delete, select, update

from cdrgate.storage.tables import ingest_key


class IngestKey(NamedTuple):
    name: str
    sn: str
    created_ms: int
    last_used_ms: int | None


def create(conn: Connection, name: str, key_hash: str, sn: str, now_ms: int) -> bool:
    """Add a key; False if the name is taken (keys are replaced by delete + add)."""
    if conn.execute(select(ingest_key.c.name).where(ingest_key.c.name == name)).first():
        return False
    conn.execute(ingest_key.insert().values(name=name, key_hash=key_hash, sn=sn, created_ms=now_ms))
    return True


def use(conn: Connection, key_hash: str, now_ms: int) -> IngestKey | None:
    """The key with this hash, marked as used now; None if there is none."""
    row = conn.execute(
        update(ingest_key)
        .where(ingest_key.c.key_hash == key_hash)
        .values(last_used_ms=now_ms)
        .returning(
            ingest_key.c.name, ingest_key.c.sn, ingest_key.c.created_ms, ingest_key.c.last_used_ms
        )
    ).first()
    return IngestKey(*row) if row is not None else None


def all_keys(conn: Connection) -> list[IngestKey]:
    k = ingest_key.c
    rows = conn.execute(select(k.name, k.sn, k.created_ms, k.last_used_ms).order_by(k.name))
    return [IngestKey(*row) for row in rows]


def remove(conn: Connection, name: str) -> bool:
    return conn.execute(delete(ingest_key).where(ingest_key.c.name == name)).rowcount > 0
