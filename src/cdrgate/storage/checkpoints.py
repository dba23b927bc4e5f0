"""The ``follow_checkpoint`` table: how far ``import --follow`` has read each file."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import Connection, select

from cdrgate.storage.dialect import insert
from cdrgate.storage.tables import follow_checkpoint


class Checkpoint(NamedTuple):
    device: int
    inode: int
    offset: int  # bytes of whole lines consumed
    line: int  # lines consumed


def load(conn: Connection, source: str) -> Checkpoint | None:
    c = follow_checkpoint.c
    row = conn.execute(
        select(c.device, c.inode, c.offset, c.line).where(c.source == source)
    ).first()
    return Checkpoint(*row) if row is not None else None


def save(conn: Connection, source: str, checkpoint: Checkpoint, now_ms: int) -> None:
    values = {**checkpoint._asdict(), "updated_ms": now_ms}
    stmt = insert(conn, follow_checkpoint).values(source=source, **values)
    conn.execute(
        stmt.on_conflict_do_update(index_elements=[follow_checkpoint.c.source], set_=values)
    )
