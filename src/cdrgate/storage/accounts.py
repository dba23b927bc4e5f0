"""The ``api_account`` table: API users and their password hashes."""

from __future__ import annotations

from sqlalchemy import Connection, delete, select

from cdrgate.storage.dialect import insert
from cdrgate.storage.tables import api_account


def upsert(conn: Connection, name: str, password_hash: str, now_ms: int) -> None:
    stmt = insert(conn, api_account).values(
        name=name, password_hash=password_hash, created_ms=now_ms, updated_ms=now_ms
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[api_account.c.name],
            set_={"password_hash": password_hash, "updated_ms": now_ms},
        )
    )


def password_hash(conn: Connection, name: str) -> str | None:
    return conn.execute(
        select(api_account.c.password_hash).where(api_account.c.name == name)
    ).scalar_one_or_none()


def names(conn: Connection) -> list[str]:
    return list(conn.execute(select(api_account.c.name).order_by(api_account.c.name)).scalars())


def remove(conn: Connection, name: str) -> bool:
    return conn.execute(delete(api_account).where(api_account.c.name == name)).rowcount > 0
