"""A small download's token, day, spend and audit record as one PostgreSQL statement.

A small download of a signed random on the event loop took two round trips: the token with the
day (``storage/session_day.py``), then the spend with its audit record
(``storage/signed_spend.py``); each costs the loop ~22-23 us of CPU (bench/RESULTS.md,
twenty-second round). Here they are one statement, run in autocommit:

    WITH s AS (<session_day's statement: the token's row and, when it may answer, the day>),
         spent AS (INSERT INTO cdr_random SELECT <the random's row> FROM s
                   WHERE <the download can be answered from s> ON CONFLICT DO NOTHING
                   RETURNING expires_ms),
         audited AS (INSERT INTO download_audit SELECT <the record>, s.account,
                     <the day's rows and bytes> FROM spent, s RETURNING id, rows, bytes)
    SELECT s.*, audited.id, audited.rows, audited.bytes FROM s LEFT JOIN audited ON true

The random is spent only when the download can be answered from the day read with the token:
the token fresh (its sliding mark not due, so alive), from the caller's address, unscoped
(``session_day``'s own condition, which reads the day), alive (``alive_after``: a token idle
longer than ``TOUCH_EVERY_MS``'s margin is not fresh either, but the two settings are apart),
the day at most ``most`` lines and at least ``least`` (1 where an empty result is refused).
Otherwise nothing is written and the row is ``session_day``'s: the caller goes on as with
that statement's answer. The spend is the primary key's, as ``signed_spend``'s: of concurrent
spends of one random exactly one inserts its row, the others insert nothing and, as the record
is inserted only from the row the spend returned, write no record either. All parts of the
statement see one snapshot, taken after the download was asked for; the record's ``rows`` and
``bytes`` are computed from the lines the statement read and returned with its id.

The day is read from ``cdr``, or, on the loop, from its month's partition when the range lies
inside one month whose partition the process knows (``storage/day_months.py``): the plan then
holds one partition, not all of them.

The bytes: ``_body_size``'s rule (``services/downloads.py``: the header and the lines, UTF-8)
with the header's length a parameter (the caller's constant) and the lines' UTF-8 length
counted by the server (``convert_to``: the database's encoding need not be UTF-8).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import BigInteger, Integer, and_, bindparam, func, literal_column, select, true
from sqlalchemy.dialects import postgresql

from cdrgate.storage import session_day, signed_spend
from cdrgate.storage.cdrs import CdrQuery
from cdrgate.storage.driver import PostgresStatement
from cdrgate.storage.randoms import RandomRow
from cdrgate.storage.tables import cdr_random, download_audit

# The record's columns the statement computes; every other one is ``signed_spend``'s parameter.
_COMPUTED = ("account", "rows", "bytes")
_GIVEN = tuple(column.key for column in download_audit.c if column.key not in ("id", *_COMPUTED))


class Spent(NamedTuple):
    """The audit record the statement wrote with the spend."""

    record_id: int
    rows: int
    bytes: int


def statement(query: CdrQuery, month: str | None = None) -> PostgresStatement:
    """The statement for ``query`` (extensions, no scope); asyncpg runs it
    (``storage/pg_loop.py``). ``month``: the day read from that monthly partition of ``cdr``
    (``storage/day_months.py``: one the range lies inside) instead of ``cdr``."""
    assert query.extensions is not None, "the one statement reads extensions"
    return _statement(len(query.extensions), month)


def params(
    token_hash: str, fresh_after_ms: int, alive_after_ms: int, client_ip: str, query: CdrQuery,
    most: int, least: int, spent: RandomRow, record: Mapping[str, Any], header_size: int,
) -> dict[str, Any]:  # fmt: skip
    """``statement(query)``'s values: ``session_day.params``'s; the token alive after
    ``alive_after_ms``; the day's fewest lines ``least``; the random's row ``spent``; the audit
    ``record`` (its computed columns are ignored); the size of the download's header."""
    # One address: the day is read for a token logged in from the caller's, and the random's
    # row names the token's (``session_day``'s ``client_ip``; the row's, of the same name).
    assert spent.client_ip == client_ip, "a random spent from its token's login address"
    return {
        **session_day.params(token_hash, fresh_after_ms, client_ip, query, most),
        # The random's row and the record (its computed columns unused), as ``signed_spend``'s.
        **signed_spend.params(spent, record),
        "alive_after": alive_after_ms,
        "most": most,
        "least": least,
        "header_size": header_size,
    }


def spent_of(row: Sequence[Any] | None) -> Spent | None:
    """The record the statement wrote, or None when it spent nothing (then ``row`` is read as
    ``session_day``'s: ``session_day.answer``)."""
    if row is None or row[5] is None:
        return None
    return Spent(int(row[5]), int(row[6]), int(row[7]))


@lru_cache(maxsize=256)
def _statement(exts: int, month: str | None) -> PostgresStatement:
    """Compiled on first use, per length of the extension list and month (as
    ``session_day``'s)."""
    session = session_day.core(month).cte("s")
    day = session.c.day
    answerable = and_(
        day.is_not(None),  # fresh, from the caller's address, unscoped: the day was read
        session.c.last_seen_ms > bindparam("alive_after", type_=BigInteger),
        func.cardinality(day) <= bindparam("most", type_=Integer),
        func.cardinality(day) >= bindparam("least", type_=Integer),
    )
    # Typed parameters: in a SELECT list PostgreSQL could not infer their types.
    spent = (
        postgresql.insert(cdr_random)
        .from_select(
            list(RandomRow._fields),
            select(
                *(bindparam(name, type_=cdr_random.c[name].type) for name in RandomRow._fields)
            ).where(answerable),
        )
        .on_conflict_do_nothing()
        .returning(cdr_random.c.expires_ms)
        .cte("spent")
    )
    lines_size = func.octet_length(
        func.convert_to(func.array_to_string(day, literal_column("''")), literal_column("'UTF8'"))
    )
    computed = {
        "account": session.c.account,
        "rows": func.cardinality(day),
        "bytes": bindparam("header_size", type_=BigInteger) + lines_size,
    }
    given = {name: signed_spend.audit_value(name) for name in _GIVEN}
    values = {**given, **computed}
    columns = [column.key for column in download_audit.c if column.key != "id"]
    audited = (
        download_audit.insert()
        .from_select(columns, select(*(values[name] for name in columns)).select_from(spent))
        .returning(download_audit.c.id, download_audit.c.rows, download_audit.c.bytes)
        .cte("audited")
    )
    stmt = select(
        session.c.account, session.c.last_seen_ms, session.c.extensions, session.c.client_ip,
        day, audited.c.id, audited.c.rows, audited.c.bytes,
    ).select_from(session.outerjoin(audited, true()))  # fmt: skip
    return PostgresStatement.of(stmt, expand={"exts": exts})
