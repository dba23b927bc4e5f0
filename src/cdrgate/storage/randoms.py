"""The ``cdr_random`` table: one-time download keys; and the shape of every download random.

A random (``cdr/get_random``'s and ``recording/get_random``'s) is 32 lower-case hex characters,
as a device's are: its expiry (epoch ms, 11 hex digits) then 21 digits (84 bits) from the
CSPRNG. Both tables are keyed by (expiry, hash of the random), so a download finds the row from
the random alone, and randoms issued in expiry order append at the key's right edge
(``tables.cdr_random``). Only the hash is stored: a database copy holds no live random.

A CDR random is stored when issued (a random with an ``allowedip``, or asked for from another
address than the token's login), or signed and not stored (the common case:
``services/signed_randoms.py``). Redeeming a stored one is a single conditional UPDATE
(``used_ms IS NULL``, not expired, and the download's token, filter and address as issued);
spending a signed one is a single INSERT of its row, already used, that does nothing when the
row is there. Either way exactly one of any number of concurrent downloads wins, in one
process or many, on either engine, and the spent rows are purged by expiry alike.
"""

from __future__ import annotations

import os
import threading
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, delete, or_, select, update
from sqlalchemy.dialects import postgresql

from cdrgate.passwords import secret_hash
from cdrgate.storage.driver import HotStatement, SqliteStatement, runner, sqlite_driver
from cdrgate.storage.tables import cdr_random

# Used and expired randoms are kept a little while for diagnosis, then purged.
SPENT_KEEP_MS = 3600 * 1000
RANDOM_CHARS = 32
_EXPIRY_DIGITS = 11  # epoch ms in hex: 11 digits last until the year 2527
_SECRET_BITS = 4 * (RANDOM_CHARS - _EXPIRY_DIGITS)
_HEX = frozenset("0123456789abcdef")
_SECRET_BYTES = (_SECRET_BITS + 7) // 8
_SPARE_BITS = 8 * _SECRET_BYTES - _SECRET_BITS
# The CSPRNG is read in blocks: one os.urandom call per random (secrets.randbits) showed in a
# small flow's profile, and one call returns 4 KiB in about the time of a few small ones.
_BLOCK_BYTES = 4096


class _Entropy:
    """Bytes of os.urandom handed out once each, under a lock (randoms are issued on the loop
    and in worker threads). A forked child starts empty: bytes read before the fork are the
    parent's to use, and sharing them would issue the same random in both processes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._block = b""
        self._at = 0

    def take(self, size: int) -> bytes:
        with self._lock:
            if self._at + size > len(self._block):
                self._block, self._at = os.urandom(_BLOCK_BYTES), 0
            start = self._at
            self._at = start + size
            return self._block[start : start + size]

    def forget(self) -> None:
        # In the child, right after fork: the lock may have been held by another thread of
        # the parent, so it is replaced, not taken.
        self._lock = threading.Lock()
        self._block, self._at = b"", 0


_ENTROPY = _Entropy()
os.register_at_fork(after_in_child=_ENTROPY.forget)


def entropy(size: int) -> bytes:
    """``size`` bytes from the CSPRNG, never handed out twice (a signed random's nonce)."""
    return _ENTROPY.take(size)


class RandomRow(NamedTuple):
    """A ``cdr_random`` row, in the table's column order."""

    expires_ms: int
    random_hash: str
    token_hash: str
    selector: str
    start_ts: int
    end_ts: int
    client_ip: str
    allowed_ip: str | None
    used_ms: int | None


class NewRandom(NamedTuple):
    """A fresh random: ``text`` for the client, its row key (the expiry and the hash, which
    ``key_of`` finds again from the text) for the table."""

    text: str
    expires_ms: int
    random_hash: str


def new_random(expires_ms: int) -> NewRandom:
    """A fresh random that expires at ``expires_ms``."""
    secret = int.from_bytes(_ENTROPY.take(_SECRET_BYTES)) >> _SPARE_BITS
    text = f"{expires_ms:0{_EXPIRY_DIGITS}x}{secret:0{RANDOM_CHARS - _EXPIRY_DIGITS}x}"
    return NewRandom(text, expires_ms, secret_hash(text))


def normalised(random: str) -> str | None:
    """A random as the client sent it, in the form it was issued; None when it cannot be one
    of ours: it was never issued."""
    random = random.strip().lower()
    if len(random) != RANDOM_CHARS or not _HEX.issuperset(random):
        return None
    return random


def key_of(random: str) -> tuple[int, str] | None:
    """The row key ``(expires_ms, hash)`` a random as the client sent it names (either table);
    None when it cannot be one of ours: it was never issued."""
    text = normalised(random)
    if text is None:
        return None
    return int(text[:_EXPIRY_DIGITS], 16), secret_hash(text)


# A flow runs each of these once: built once, executed with parameters (building a
# statement costs several times what executing it does; see bench/RESULTS.md), and on SQLite
# run on the driver from the same statement compiled once (storage/driver.py).
_CREATE = HotStatement.of(cdr_random.insert(), column_keys=RandomRow._fields)
_KEY = (
    cdr_random.c.expires_ms == bindparam("expiry"),
    cdr_random.c.random_hash == bindparam("hash"),
)
_FIND = HotStatement.of(select(cdr_random).where(*_KEY))
# The redeem is the happy path's only statement: every rule a download must meet is in its
# WHERE (same token, same filter, unused, unexpired, from get_random's caller or allowedip), so
# a request that meets them all spends the random without reading the row first; one that
# changes nothing reads it (``find``) to learn which rule refused it.
_REDEEM = HotStatement.of(
    update(cdr_random)
    .where(
        *_KEY,
        cdr_random.c.used_ms.is_(None),
        cdr_random.c.expires_ms > bindparam("now"),
        cdr_random.c.token_hash == bindparam("token"),
        cdr_random.c.selector == bindparam("filter_selector"),
        cdr_random.c.start_ts == bindparam("start"),
        cdr_random.c.end_ts == bindparam("end"),
        or_(cdr_random.c.client_ip == bindparam("ip"), cdr_random.c.allowed_ip == bindparam("ip")),
    )
    .values(used_ms=bindparam("now"))
)


# A signed random's spend. PostgreSQL's INSERT construct is the one definition: SQLite spells
# ON CONFLICT DO NOTHING the same way, and its text is compiled from it. Who won: on
# PostgreSQL the winner reads a RETURNING row, a loser none (psycopg's rowcount for ON
# CONFLICT DO NOTHING is -1, not 0); on SQLite the rows the INSERT changed, 1 or 0, without
# RETURNING, which SQLite 3.40 runs by buffering the rows in a temporary table first: it more
# than doubled the INSERT's CPU (bench/RESULTS.md, fourteenth round).
_SPEND = postgresql.insert(cdr_random).on_conflict_do_nothing()
_SPEND_RETURNING = _SPEND.returning(cdr_random.c.expires_ms)
_SPEND_SIGNED = HotStatement(
    _SPEND_RETURNING,
    SqliteStatement.of(_SPEND, column_keys=RandomRow._fields),
    _SPEND_RETURNING,
    RandomRow._fields,
)


def create(conn: Connection, **values: Any) -> None:
    """Store a new random: every column but ``used_ms`` given."""
    _CREATE.rowcount(conn, {"used_ms": None, **values})


def find(conn: Connection, expires_ms: int, random_hash: str) -> RandomRow | None:
    row = _FIND.first(conn, {"expiry": expires_ms, "hash": random_hash})
    return None if row is None else RandomRow._make(row)


class Spend(NamedTuple):
    """What a download must match to spend a random: the row's key, then its rules."""

    expires_ms: int
    random_hash: str
    token_hash: str
    selector: str
    start_ts: int
    end_ts: int
    client_ip: str


def redeem(conn: Connection, spend: Spend, now_ms: int) -> bool:
    """Mark the random used if ``spend`` meets every rule of its row, it is unused and
    unexpired; True if this call won (exactly one of any number of concurrent ones)."""
    params = {
        "expiry": spend.expires_ms, "hash": spend.random_hash, "now": now_ms,
        "token": spend.token_hash, "filter_selector": spend.selector, "start": spend.start_ts,
        "end": spend.end_ts, "ip": spend.client_ip,
    }  # fmt: skip
    return _REDEEM.rowcount(conn, params) == 1


# SQLite's INSERT takes the row's values in the table's column order, RandomRow's: the row is
# its parameters as it is (``_asdict`` and the lookups back cost a download ~3 us).
assert _SPEND_SIGNED.sqlite.marks == RandomRow._fields


def spend_signed(conn: Connection, row: RandomRow) -> bool:
    """Insert a signed random's row (``used_ms`` set) unless it is there; True if this call
    inserted it (exactly one of any number of concurrent ones)."""
    raw = sqlite_driver(conn)
    if raw is None:
        return _SPEND_SIGNED.first(conn, row._asdict()) is not None
    return runner(raw).execute(_SPEND_SIGNED.sqlite.sql, row).rowcount == 1


def purge(conn: Connection, now_ms: int) -> int:
    cutoff = now_ms - SPENT_KEEP_MS
    return conn.execute(delete(cdr_random).where(cdr_random.c.expires_ms < cutoff)).rowcount
