"""Administration of API accounts and login lockouts (``cdrgate api-user``)."""

from __future__ import annotations

from cdrgate.storage import accounts, login_guard
from cdrgate.storage.db import Database


def names(db: Database) -> list[str]:
    """The API usernames, sorted."""
    with db.read() as conn:
        return accounts.names(conn)


def scopes(db: Database) -> list[tuple[str, str | None]]:
    """``(name, extensions)`` of every account, by name; None: every extension."""
    with db.read() as conn:
        return accounts.scopes(conn)


def delete(db: Database, name: str) -> bool:
    """Remove an API account; False if there was none of that name."""
    with db.write() as conn:
        return accounts.remove(conn, name)


def unlock(db: Database, client_ip: str | None = None) -> int:
    """Lift the lockout of one client IP, or of all; how many records were cleared."""
    with db.write() as conn:
        return login_guard.unlock(conn, client_ip)
