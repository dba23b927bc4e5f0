"""The ``server_key`` table: secret keys that every worker and host of one database shares.

A key is drawn from the CSPRNG by whichever process needs it first and inserted unless one is
there already; every process then reads the stored one, so two that race both end up with the
winner's key.
"""

from __future__ import annotations

import secrets

from sqlalchemy import Connection, select

from cdrgate.storage import dialect
from cdrgate.storage.tables import server_key

KEY_BYTES = 32


def get_or_create(conn: Connection, name: str) -> bytes:
    """The key called ``name``, created in ``conn``'s transaction if this database has none."""
    fresh = secrets.token_hex(KEY_BYTES)
    conn.execute(
        dialect.insert(conn, server_key).values(name=name, value=fresh).on_conflict_do_nothing()
    )
    stored = read(conn, name)
    assert stored is not None  # inserted above unless another process's row was there
    return stored


def read(conn: Connection, name: str) -> bytes | None:
    """The key called ``name`` as stored now; None when this database has none."""
    stored = conn.execute(
        select(server_key.c.value).where(server_key.c.name == name)
    ).scalar_one_or_none()
    return None if stored is None else bytes.fromhex(stored)
