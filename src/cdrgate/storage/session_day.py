"""A token's session and a small download's day of CDRs, as one PostgreSQL statement.

A small download of a signed random on PostgreSQL read the token (``tokens.last_seen``), then
the day's lines (``cdrs.read_whole``): two round trips, each a statement's worth of psycopg's
CPU in the server, a wake-up of its backend and the loopback's work on both sides
(bench/RESULTS.md, nineteenth round). Here one statement answers both:

    SELECT <the token's row, as last_seen reads it>,
           CASE WHEN <the token is fresh, from the caller's address, unscoped>
                THEN (SELECT coalesce(array_agg(line ORDER BY ts, callid, sn), '{}')
                      FROM (<the day's read, as read_whole's, LIMIT most + 1>) AS day)
           END
    FROM api_token JOIN api_account ... WHERE token_hash = ...

The day is read only when the download can be answered from it (``read``): an unknown or
expired token reads no CDR (the subquery is PostgreSQL's init plan, run only when the
``CASE`` reaches it), nor one whose sliding mark is due or asked from another address (the
write transaction then answers). A scope's values are part of its own statement
(``cdrs._statement``): a scoped account's day is read apart, as before. The token and the day
are read in one snapshot, taken after the download was asked for, as the two reads' were.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Connection,
    Select,
    and_,
    bindparam,
    case,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects import postgresql

from cdrgate.storage import cdrs, tokens
from cdrgate.storage.cdrs import CdrQuery
from cdrgate.storage.driver import PostgresStatement, postgres_driver
from cdrgate.storage.tables import api_account, api_token


class SessionDay(NamedTuple):
    """``read``'s answer."""

    seen: tokens.Seen | None  # as ``tokens.last_seen``: None for a token unknown
    # The day's lines in download order; None when not read (see ``read``) or more than
    # ``most``.
    day: list[str] | None


def read(
    conn: Connection,
    token_hash: str,
    fresh_after_ms: int,
    client_ip: str,
    query: CdrQuery,
    most: int,
) -> SessionDay:
    """The session of ``token_hash`` and, when the download can be answered from it, the lines
    of ``query`` (extensions, no scope) if there are at most ``most``: when the session was
    seen after ``fresh_after_ms`` (live, its sliding mark not due), logged in from
    ``client_ip``, and its account has no scope. On PostgreSQL only: on SQLite the token's
    read and the day's cost no round trip, and the caller makes them apart (the day only once
    the token is known to allow it), as before this statement."""
    row = (
        statement(query)
        .run_at_once(
            postgres_driver(conn), params(token_hash, fresh_after_ms, client_ip, query, most)
        )
        .fetchone()
    )
    return answer(row, most)


def statement(query: CdrQuery, month: str | None = None) -> PostgresStatement:
    """``read``'s statement for ``query`` (asyncpg runs it too: ``storage/pg_loop.py``);
    ``month``: the day read from that monthly partition (``storage/day_months.py``)."""
    assert query.extensions is not None, "the one statement reads extensions"
    return _statement(len(query.extensions), month)


def params(
    token_hash: str, fresh_after_ms: int, client_ip: str, query: CdrQuery, most: int
) -> dict[str, Any]:
    """``statement(query)``'s values for ``read``'s arguments."""
    assert query.extensions is not None, "the one statement reads extensions"
    return {
        "hash": token_hash,
        "fresh_after": fresh_after_ms,
        "client_ip": client_ip,
        "exts": list(query.extensions),
        "start": query.start_ts,
        "end": query.end_ts,
        "limit": most + 1,
    }


def answer(row: Sequence[Any] | None, most: int) -> SessionDay:
    """``read``'s answer from the statement's row (psycopg's or asyncpg's)."""
    if row is None:
        return SessionDay(None, None)
    day: list[str] | None = row[4]
    return SessionDay(tokens.seen_of(row), None if day is None or len(day) > most else day)


@lru_cache(maxsize=256)
def _statement(exts: int, month: str | None) -> PostgresStatement:
    """Compiled on first use, per length of the extension list (``cdrs._postgres_statement``
    does the same) and month read: a SQLite process never loads PostgreSQL's dialect."""
    return PostgresStatement.of(core(month), expand={"exts": exts})


def core(month: str | None = None) -> Select[Any]:
    """The statement's Core form, its last column ``day`` (read from ``cdr``, or from its
    partition ``month``); also the head of a small download's statement that spends the
    random with it (``storage/session_spend.py``)."""
    day = cdrs.day_lines(limited=True, month=month).subquery("day")
    lines = func.coalesce(
        func.array_agg(postgresql.aggregate_order_by(day.c.line, day.c.ts, day.c.callid, day.c.sn)),
        literal_column("'{}'"),  # a day read without a line: empty, not NULL ("not read")
    )
    read_day = and_(
        api_token.c.last_seen_ms > bindparam("fresh_after", type_=BigInteger),
        api_token.c.client_ip == bindparam("client_ip"),
        api_account.c.extensions.is_(None),
    )
    return tokens.SESSION.add_columns(
        case((read_day, select(lines).scalar_subquery())).label("day")
    )
