"""The ``login_guard`` table: consecutive failed logins and lockouts, per client IP.

Failures are counted with one atomic upsert each, so concurrent wrong guesses cannot slip
more than the allowed number of attempts past the lock, in one process or many. A good login
clears the count only when every counted failure tried that same account: a client holding
one account cannot reset its guesses at another's by logging in with its own.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import Connection, case, delete, func, or_, select, update

from cdrgate.storage.dialect import insert
from cdrgate.storage.tables import login_guard


def locked_until(conn: Connection, client_ip: str) -> int:
    """Epoch ms until which the IP is locked (0 if never locked)."""
    value = conn.execute(
        select(login_guard.c.locked_until_ms).where(login_guard.c.client_ip == client_ip)
    ).scalar_one_or_none()
    return int(value or 0)


SEVERAL = "*"  # the failures tried more than one account


def account_key(username: str) -> str:
    """The account a login tried, as stored: a digest, so an attacker's made-up names (any
    length, any bytes) are neither kept nor shown."""
    return hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()


def record_failure(conn: Connection, client_ip: str, now_ms: int, account: str) -> int:
    """Count one failure of a login that tried ``account`` (``account_key``) and return the
    consecutive count (a lapsed lock starts afresh)."""
    g = login_guard.c
    lapsed = (g.locked_until_ms > 0) & (g.locked_until_ms <= now_ms)
    stmt = insert(conn, login_guard).values(
        client_ip=client_ip,
        failures=1,
        locked_until_ms=0,
        last_failure_ms=now_ms,
        failed_account=account,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[g.client_ip],
        set_={
            "failures": case((lapsed, 1), else_=g.failures + 1),
            "locked_until_ms": case((lapsed, 0), else_=g.locked_until_ms),
            "last_failure_ms": now_ms,
            # A count from before 0019 names no account: taken as this one's.
            "failed_account": case(
                (lapsed | g.failed_account.is_(None), account),
                (g.failed_account == account, account),
                else_=SEVERAL,
            ),
        },
    ).returning(login_guard.c.failures)
    return int(conn.execute(stmt).scalar_one())


def lock(conn: Connection, client_ip: str, until_ms: int) -> None:
    """Lock the IP unless a lock is already running (a racing failure must not extend it)."""
    conn.execute(
        update(login_guard)
        .where(login_guard.c.client_ip == client_ip, login_guard.c.locked_until_ms == 0)
        .values(locked_until_ms=until_ms)
    )


def reset(conn: Connection, client_ip: str, now_ms: int, account: str) -> bool:
    """After a good login of ``account`` (``account_key``): clear the count if every counted
    failure tried that account (a count from before 0019 names none: cleared, as then).
    False if the IP got locked meanwhile."""
    g = login_guard.c
    if locked_until(conn, client_ip) > now_ms:
        return False
    mine = or_(g.failed_account == account, g.failed_account.is_(None))
    conn.execute(delete(login_guard).where(g.client_ip == client_ip, mine))
    return True


def unlock(conn: Connection, client_ip: str | None = None) -> int:
    """Administrative unlock of one IP, or of all."""
    stmt = delete(login_guard)
    if client_ip is not None:
        stmt = stmt.where(login_guard.c.client_ip == client_ip)
    return conn.execute(stmt).rowcount


def purge(conn: Connection, now_ms: int, keep_ms: int) -> int:
    """Forget lapsed locks and failure counts idle for ``keep_ms``."""
    g = login_guard.c
    return conn.execute(
        delete(login_guard).where(g.locked_until_ms <= now_ms, g.last_failure_ms < now_ms - keep_ms)
    ).rowcount


def count_locked(conn: Connection, now_ms: int) -> int:
    """Client IPs whose lock has not lapsed yet (the lockouts gauge)."""
    stmt = (
        select(func.count()).select_from(login_guard).where(login_guard.c.locked_until_ms > now_ms)
    )
    return int(conn.execute(stmt).scalar_one())
