"""Logins, sessions (tokens) and the per-IP lockout, as the S-Series API defines them."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from functools import lru_cache
from typing import NamedTuple

from sqlalchemy import Connection

from cdrgate import metrics, passwords, scope
from cdrgate.clock import Clock
from cdrgate.errors import ApiError, Errno
from cdrgate.settings import Settings
from cdrgate.storage import accounts, login_guard, tokens
from cdrgate.storage.db import Database


class EventField(NamedTuple):
    column: str
    max_chars: int


# Event-push fields a client may send on login/heartbeat: the column each is kept in, and the
# longest value kept. cdrgate pushes no events, so they are only recorded; real clients send
# short ones ("8260", "1.0.2", "http://192.168.5.100:8260/cdr"), and uncapped a body could
# store up to 64 KiB in each, a token. The English v1 heartbeat table spells urltag
# "urlflag"; both are accepted.
EVENT_FIELDS: Mapping[str, EventField] = {
    "ipaddr": EventField("event_ip", 255),  # an address, or a host name
    "port": EventField("event_port", 16),
    "url": EventField("event_url", 2048),
    "urltag": EventField("event_urltag", 16),
    "urlflag": EventField("event_urltag", 16),
    "version": EventField("event_version", 32),
}


# How stale a session's last-seen mark may get before a request writes it again. A token
# therefore lives between `token_idle_seconds` minus this and `token_idle_seconds` after its
# last request.
TOUCH_EVERY_MS = 5_000


class Session(NamedTuple):
    """An authenticated request: whose it is, and what the account may read (``scope``:
    None for every extension). Every read path takes its scope from here. One per request,
    so a NamedTuple: a frozen dataclass sets each field with ``object.__setattr__``."""

    account: str
    token_hash: str
    scope: scope.Scope | None = None
    login_ip: str = ""  # the address the token logged in from


class AuthService:
    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def login(
        self, username: str, password_md5: str, client_ip: str, event: Mapping[str, str]
    ) -> str:
        """Check credentials and open a session; returns the new token."""
        columns = event_columns(event)
        now = self.now_ms()
        with self.db.read() as conn:
            if login_guard.locked_until(conn, client_ip) > now:
                metrics.record_login("locked_out")
                raise ApiError(Errno.LOCKED_OUT, "this address is locked out (api-user unlock)")
            stored = accounts.password_hash(conn, username)
        tried = login_guard.account_key(username)
        if not passwords.verify_md5(password_md5, stored):
            why = "no such API user" if stored is None else "wrong password"
            self._fail(client_ip, tried, why)
        token = secrets.token_hex(16)
        with self.db.write() as conn:
            if not login_guard.reset(conn, client_ip, now, tried):
                metrics.record_login("locked_out")
                raise ApiError(Errno.LOCKED_OUT, "locked out by a concurrent failed login")
            tokens.create(conn, passwords.secret_hash(token), username, client_ip, now, columns)
        metrics.record_login("ok")
        return token

    def _fail(self, client_ip: str, tried: str, why: str) -> None:
        now = self.now_ms()
        limit = self.settings.lockout_failures
        with self.db.write() as conn:
            failures = login_guard.record_failure(conn, client_ip, now, tried)
            if failures >= limit:
                login_guard.lock(conn, client_ip, now + self.settings.lockout_seconds * 1000)
        # Failures beyond the limit raced past the lock check: they are answered as locked.
        metrics.record_login("locked_out" if failures > limit else "bad_credentials")
        errno = Errno.LOCKED_OUT if failures > limit else Errno.BAD_CREDENTIALS
        raise ApiError(errno, f"{why} (failure {failures} of {limit} before a lockout)")

    def authenticate(self, token: str | None) -> Session:
        """Validate a token and slide its idle lifetime (every authenticated request does).

        A read, and a write only when the sliding mark is due (``TOUCH_EVERY_MS``): inside
        ``Database.run_on_loop`` the read is on the loop's own connection, and does not depend
        on the loop's open group commit (``Database.read``'s ``one_statement``: the only
        write to a token on the loop is its sliding mark, moved only while it is live)."""
        return self.authenticate_hash(token_hash_of(token))

    def authenticate_hash(self, token_hash: str) -> Session:
        """``authenticate`` of a token already hashed (``token_hash_of``)."""
        now = self.now_ms()
        with self.db.read(one_statement=True) as conn:
            seen = tokens.last_seen(conn, token_hash)
        session, touch_due = self.session_of(seen, token_hash, now)
        if touch_due:
            with self.db.write() as conn:
                self._touch(conn, token_hash, now)
        return session

    def authenticate_in(self, conn: Connection, token_hash: str) -> Session:
        """``authenticate`` inside the caller's write transaction, so a request that writes
        anyway (issue or redeem a random) costs one transaction, not a read plus a write."""
        now = self.now_ms()
        seen = tokens.last_seen(conn, token_hash)
        session, touch_due = self.session_of(seen, token_hash, now)
        if touch_due:
            self._touch(conn, token_hash, now)
        return session

    def session_of(
        self, seen: tokens.Seen | None, token_hash: str, now: int
    ) -> tuple[Session, bool]:
        """``(the session, whether the sliding mark is due a write)`` of a session read as
        ``tokens.last_seen`` reads it (the scope with the token), or the errno of a dead token:
        ``authenticate_in`` without its write (a caller that finds the mark due then
        authenticates in a write transaction instead)."""
        if seen is None:
            raise ApiError(Errno.TOKEN_UNKNOWN, "token never issued, logged out or purged")
        account, last_seen_ms, extensions, login_ip = seen
        idle_ms = self.settings.token_idle_seconds * 1000
        if last_seen_ms <= now - idle_ms:
            raise ApiError(Errno.TOKEN_EXPIRED, f"token idle for over {idle_ms // 1000} s")
        # A write per request would serialise every API call on the database's write
        # lock; the sliding mark only needs to move every few seconds.
        session = Session(account, token_hash, scope.stored(extensions), login_ip)
        return session, now - last_seen_ms >= TOUCH_EVERY_MS

    def _touch(self, conn: Connection, token_hash: str, now: int) -> None:
        if tokens.touch(conn, token_hash, now, self.settings.token_idle_seconds * 1000) is None:
            expired = tokens.exists(conn, token_hash)
            errno = Errno.TOKEN_EXPIRED if expired else Errno.TOKEN_UNKNOWN
            raise ApiError(errno, "token expired or removed meanwhile")

    def heartbeat(self, token: str | None, event: Mapping[str, str]) -> None:
        columns = event_columns(event)
        session = self.authenticate(token)
        with self.db.write() as conn:
            tokens.set_event_target(conn, session.token_hash, columns)

    def logout(self, token: str | None) -> None:
        session = self.authenticate(token)
        with self.db.write() as conn:
            tokens.remove(conn, session.token_hash)

    def purge_expired(self) -> int:
        now = self.now_ms()
        idle_ms = self.settings.token_idle_seconds * 1000
        with self.db.write() as conn:
            removed = tokens.purge(conn, now, idle_ms)
            removed += login_guard.purge(conn, now, 24 * 3600 * 1000)
        return removed


def token_hash_of(token: str | None) -> str:
    """The stored form of a token as a request carries it; 20005 when there is none."""
    if token is None or not token.strip():
        raise ApiError(Errno.TOKEN_EMPTY, "no token= in the query string")
    return _token_hash(token.strip())


# A client sends its token on every request, so its hash is asked for again and again: the
# last few are kept (only tokens: a random is hashed twice in its life, and would push them
# out). A token never seen costs the sha256 as before, so unknown ones gain nothing from it.
_token_hash = lru_cache(maxsize=256)(passwords.secret_hash)


def event_columns(event: Mapping[str, str]) -> dict[str, str]:
    """The event fields of a login or heartbeat as columns; a value longer than its field
    allows is the device's "port error" (20008) for a port, else 20000 (as a body too large)."""
    columns = {}
    for key, value in event.items():
        field = EVENT_FIELDS.get(key)
        if field is None:
            continue
        if len(value) > field.max_chars:
            errno = Errno.PORT_ERROR if key == "port" else Errno.JSON_ONLY
            raise ApiError(errno, f"{key} is longer than {field.max_chars} characters")
        columns[field.column] = value
    return columns


def set_api_user(
    db: Database,
    name: str,
    password: str,
    now_ms: int,
    extensions: scope.Scope | accounts.Keep | None = accounts.KEEP,
) -> None:
    """Create or update an API account from its plain password (hashed before storage).

    ``extensions``: a ``scope.Scope``, None for every extension, or left out to keep the
    account's scope (a new account then reads everything)."""
    stored = extensions if isinstance(extensions, accounts.Keep) else scope.stored_form(extensions)
    password_hash = passwords.hash_md5(passwords.md5_hex(password))
    with db.write() as conn:
        accounts.upsert(conn, name, password_hash, now_ms, stored)


def set_api_user_scope(
    db: Database, name: str, extensions: scope.Scope | None, now_ms: int
) -> bool:
    """Change an existing account's scope; False if there is no such account."""
    with db.write() as conn:
        return accounts.set_extensions(conn, name, scope.stored_form(extensions), now_ms)
