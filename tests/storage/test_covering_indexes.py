"""Migration 0017: the extension indexes carry the columns a download by extension reads, on
``cdr`` and (PostgreSQL) on every month; the way back to 0016 puts the plain ones back, and
a bulk load into an empty SQLite store builds them again as the migrations made them."""

from __future__ import annotations

from sqlalchemy import Connection

from cdrgate.ingest.store import store_records
from cdrgate.storage.db import Database
from tests.conftest import make_cdr
from tests.migrating import migrate

TWO_MONTHS = [
    make_cdr(callid="1.1", timestart="2026-01-31 23:59:59"),
    make_cdr(callid="1.2", timestart="2026-02-01 00:00:00"),
]
# (key, columns carried) as each engine states them.
COVERING_SQLITE = {
    "ix_cdr_callfrom_ts": "(callfrom, ts, callid, sn, line)",
    "ix_cdr_callto_ts": "(callto, ts, callid, sn, callfrom, line)",
}
COVERING_POSTGRES = {
    "ix_cdr_callfrom_ts": "(callfrom, ts) INCLUDE (callid, sn, line)",
    "ix_cdr_callto_ts": "(callto, ts) INCLUDE (callid, sn, callfrom, line)",
}
PLAIN = {"ix_cdr_callfrom_ts": "(callfrom, ts)", "ix_cdr_callto_ts": "(callto, ts)"}


def _extension_indexes(conn: Connection) -> dict[str, dict[str, str]]:
    """Table -> {the parent index it is (by name) -> its columns as the engine prints them}."""
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE name IN (?, ?)", tuple(PLAIN)
        ).all()
        return {"cdr": {name: sql.split(" ON cdr ")[1] for name, sql in rows}}
    rows = conn.exec_driver_sql(
        "SELECT c.relname, coalesce(p.relname, i.relname), pg_get_indexdef(x.indexrelid) "
        "FROM pg_index AS x JOIN pg_class AS i ON i.oid = x.indexrelid "
        "JOIN pg_class AS c ON c.oid = x.indrelid "
        "LEFT JOIN pg_inherits AS h ON h.inhrelid = x.indexrelid "
        "LEFT JOIN pg_class AS p ON p.oid = h.inhparent "
        "WHERE c.relname LIKE 'cdr%%' AND coalesce(p.relname, i.relname) IN (%(a)s, %(b)s)",
        dict(zip("ab", PLAIN, strict=True)),
    ).all()
    found: dict[str, dict[str, str]] = {}
    for table, parent, definition in rows:
        found.setdefault(table, {})[parent] = definition.split(" USING btree ")[1]
    return found


def _expected(db: Database, definitions: dict[str, str]) -> dict[str, dict[str, str]]:
    tables = ["cdr"] if db.is_sqlite else ["cdr", "cdr_default", "cdr_p202601", "cdr_p202602"]
    return {table: definitions for table in tables}


def test_the_extension_indexes_cover_a_download_and_the_way_back_makes_them_plain(
    db: Database,
):
    store_records(db, TWO_MONTHS)
    covering = COVERING_SQLITE if db.is_sqlite else COVERING_POSTGRES
    with db.read() as conn:
        assert _extension_indexes(conn) == _expected(db, covering)
    migrate(db, "downgrade", "0016")
    with db.read() as conn:
        assert _extension_indexes(conn) == _expected(db, PLAIN)
    migrate(db, "upgrade", "head")
    with db.read() as conn:
        assert _extension_indexes(conn) == _expected(db, covering)
