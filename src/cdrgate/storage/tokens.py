"""The ``api_token`` table: login sessions with a sliding idle lifetime."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, delete, select, update

from cdrgate.storage.driver import HotStatement, PostgresStatement
from cdrgate.storage.tables import api_account, api_token

# Expired sessions are kept this long so a late request still hears "expired" (20006)
# rather than "unknown" (20004); after that they are purged.
EXPIRED_KEEP_MS = 24 * 3600 * 1000


def create(
    conn: Connection,
    token_hash: str,
    account: str,
    client_ip: str,
    now_ms: int,
    event_target: Mapping[str, str | None],
) -> None:
    conn.execute(
        api_token.insert().values(
            token_hash=token_hash,
            account=account,
            client_ip=client_ip,
            created_ms=now_ms,
            last_seen_ms=now_ms,
            **event_target,
        )
    )


# Every authenticated request runs these two: built once, executed with parameters, as
# building a statement costs several times what executing it does (see bench/RESULTS.md);
# on SQLite, on the driver, compiled once from these (storage/driver.py).
_TOUCH = HotStatement.of(
    update(api_token)
    .where(
        api_token.c.token_hash == bindparam("hash"),
        api_token.c.last_seen_ms > bindparam("alive_after"),
    )
    .values(last_seen_ms=bindparam("now"))
    .returning(api_token.c.account)
)
# The account's scope comes with the token check: the session and what it may read are one
# answer, and so does the login address (a signed random is issued to it only). A token whose
# account was deleted joins nothing, so it is unknown from then on. ``SESSION`` is also the
# head of a small download's statement on PostgreSQL (storage/session_day.py).
SESSION = (
    select(
        api_token.c.account,
        api_token.c.last_seen_ms,
        api_account.c.extensions,
        api_token.c.client_ip,
    )
    .join(api_account, api_account.c.name == api_token.c.account)
    .where(api_token.c.token_hash == bindparam("hash"))
)
_LAST_SEEN = HotStatement.of(SESSION)


def last_seen_statement() -> PostgresStatement:
    """``last_seen``'s statement on PostgreSQL (asyncpg runs it too: ``storage/pg_loop.py``);
    its row is read by ``seen_of``."""
    return _LAST_SEEN.postgres


def touch(conn: Connection, token_hash: str, now_ms: int, idle_ms: int) -> str | None:
    """Refresh a live session and return its account; None if unknown or expired."""
    row = _TOUCH.first(conn, {"hash": token_hash, "alive_after": now_ms - idle_ms, "now": now_ms})
    return None if row is None else str(row[0])


class Seen(NamedTuple):
    """A session as ``last_seen`` reads it."""

    account: str
    last_seen_ms: int
    extensions: str | None  # the account's stored scope
    login_ip: str  # the address that logged in


def last_seen(conn: Connection, token_hash: str) -> Seen | None:
    """A session, expired or not; None if unknown (or its account is gone)."""
    row = _LAST_SEEN.first(conn, {"hash": token_hash})
    return None if row is None else seen_of(row)


def seen_of(row: Sequence[Any]) -> Seen:
    """A session from the first columns of a row of ``SESSION``."""
    return Seen(row[0], int(row[1]), row[2], row[3])


def exists(conn: Connection, token_hash: str) -> bool:
    found = conn.execute(select(api_token.c.token_hash).where(api_token.c.token_hash == token_hash))
    return found.first() is not None


def set_event_target(conn: Connection, token_hash: str, fields: Mapping[str, str]) -> None:
    if fields:
        conn.execute(update(api_token).where(api_token.c.token_hash == token_hash).values(**fields))


def remove(conn: Connection, token_hash: str) -> bool:
    return conn.execute(delete(api_token).where(api_token.c.token_hash == token_hash)).rowcount > 0


def purge(conn: Connection, now_ms: int, idle_ms: int) -> int:
    cutoff = now_ms - idle_ms - EXPIRED_KEEP_MS
    return conn.execute(delete(api_token).where(api_token.c.last_seen_ms < cutoff)).rowcount
