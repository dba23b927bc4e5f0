"""The ``api_account`` table: API users, their password hashes and their scopes."""

from __future__ import annotations

from enum import Enum

from sqlalchemy import Connection, delete, select, update

from cdrgate.storage.dialect import insert
from cdrgate.storage.tables import api_account


class Keep(Enum):
    """An ``extensions`` argument that leaves the stored scope as it is."""

    KEEP = "keep"


KEEP = Keep.KEEP


def upsert(
    conn: Connection,
    name: str,
    password_hash: str,
    now_ms: int,
    extensions: str | Keep | None = KEEP,
) -> None:
    """Create or update an account; ``extensions`` (a rendered scope, None for every
    extension) is set only when given, so a password change keeps the scope."""
    scope = {} if extensions is KEEP else {"extensions": extensions}
    stmt = insert(conn, api_account).values(
        name=name, password_hash=password_hash, created_ms=now_ms, updated_ms=now_ms, **scope
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[api_account.c.name],
            set_={"password_hash": password_hash, "updated_ms": now_ms, **scope},
        )
    )


def set_extensions(conn: Connection, name: str, extensions: str | None, now_ms: int) -> bool:
    """Set an existing account's scope; False if there is no such account."""
    stmt = (
        update(api_account)
        .where(api_account.c.name == name)
        .values(extensions=extensions, updated_ms=now_ms)
    )
    return conn.execute(stmt).rowcount > 0


def password_hash(conn: Connection, name: str) -> str | None:
    if "\x00" in name:
        # No account's name holds a NUL (PostgreSQL text cannot), and asking PostgreSQL about
        # one fails: a sign-in form's name with one is a wrong name, not a 500.
        return None
    return conn.execute(
        select(api_account.c.password_hash).where(api_account.c.name == name)
    ).scalar_one_or_none()


def names(conn: Connection) -> list[str]:
    return list(conn.execute(select(api_account.c.name).order_by(api_account.c.name)).scalars())


def scopes(conn: Connection) -> list[tuple[str, str | None]]:
    """``(name, stored extensions)`` of every account, by name."""
    stmt = select(api_account.c.name, api_account.c.extensions).order_by(api_account.c.name)
    return [(row.name, row.extensions) for row in conn.execute(stmt)]


def remove(conn: Connection, name: str) -> bool:
    return conn.execute(delete(api_account).where(api_account.c.name == name)).rowcount > 0
