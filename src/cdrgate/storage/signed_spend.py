"""A signed random's spend and its download's audit record, as one PostgreSQL statement.

On PostgreSQL a small download's writes were a transaction of its own: ``BEGIN``, the spend
(``randoms.spend_signed``), the audit ``INSERT``, ``COMMIT``: four round trips, each a
statement's worth of psycopg's CPU in the server and a wake-up of its backend. Here they are
one statement run in autocommit, a data-modifying CTE, which PostgreSQL runs atomically:

    WITH spent AS (INSERT INTO cdr_random ... ON CONFLICT DO NOTHING RETURNING ...)
    INSERT INTO download_audit (...) SELECT ... FROM spent RETURNING id

The audit record is inserted only from the row the spend returned, so there is one record
for the one download that spent the random (the primary key lets exactly one of any number of
concurrent spends insert its row, as ``randoms.spend_signed`` says), and none when the random
was spent already: then the statement returns no row, writes nothing, and the caller learns
the errno the usual way (``services/downloads.py``). SQLite has no data-modifying CTE: there
the two statements run in that order, the last of their block in the loop's group commit
(``Database.writes_last``), which rolls the whole commit back if the second fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from sqlalchemy import BindParameter, Connection, bindparam, select
from sqlalchemy.dialects import postgresql

from cdrgate.storage import audit, randoms
from cdrgate.storage.driver import PostgresStatement, postgres_driver, sqlite_driver
from cdrgate.storage.randoms import RandomRow
from cdrgate.storage.tables import cdr_random, download_audit

# The audit record's columns (every one but the id), each a parameter of its own name with
# this prefix: the two tables share column names (client_ip, selector).
_AUDIT = "audit_"
_AUDIT_COLUMNS = tuple(column.key for column in download_audit.c if column.key != "id")

_SPENT = (
    postgresql.insert(cdr_random)
    .values({name: bindparam(name) for name in RandomRow._fields})
    .on_conflict_do_nothing()
    .returning(cdr_random.c.expires_ms)
    .cte("spent")
)


# The record's values are typed parameters (rendered ``%s::BIGINT`` and so on): in a SELECT
# list PostgreSQL could not infer their types from the columns they go to.
def audit_value(name: str) -> BindParameter[Any]:
    """The audit record's column ``name`` as the typed parameter ``params`` names it (also
    ``storage/session_spend.py``'s)."""
    return bindparam(_AUDIT + name, type_=download_audit.c[name].type)


_SPEND_AUDITED = (
    download_audit.insert()
    .from_select(
        _AUDIT_COLUMNS, select(*(audit_value(name) for name in _AUDIT_COLUMNS)).select_from(_SPENT)
    )
    .returning(download_audit.c.id)
)


@cache
def statement() -> PostgresStatement:
    """Compiled on first use: a SQLite process never loads PostgreSQL's dialect. asyncpg runs
    it too (``storage/pg_loop.py``), with ``params``."""
    return PostgresStatement.of(_SPEND_AUDITED)


def params(spent: RandomRow, record: Mapping[str, Any]) -> dict[str, Any]:
    """``statement()``'s values: the random's row and the audit ``record``."""
    return {**spent._asdict(), **{_AUDIT + name: record[name] for name in _AUDIT_COLUMNS}}


def spend_audited(conn: Connection, spent: RandomRow, record: Mapping[str, Any]) -> int | None:
    """Insert ``spent`` (a signed random's row, ``used_ms`` set) unless its row is there and,
    in the same statement, the audit ``record`` (every column but the id); the record's id if
    this call spent the random, None if it was spent already (then nothing is written).

    ``conn`` is a PostgreSQL connection in autocommit (``Database.autocommit``): the statement
    is its own transaction; or, on SQLite, the loop's group commit (``Database.writes_last``):
    the spend, then the record if the spend inserted its row."""
    if sqlite_driver(conn) is not None:
        # Two statements, the last of a SAVEPOINT-less block in the loop's group commit
        # (``Database.writes_last``): a failure of the second rolls that commit back whole.
        if not randoms.spend_signed(conn, spent):
            return None
        return audit.insert(conn, record)
    raw = postgres_driver(conn)
    assert raw is not None, "PostgreSQL or SQLite"
    row = statement().run_at_once(raw, params(spent, record)).fetchone()
    return None if row is None else int(row[0])
