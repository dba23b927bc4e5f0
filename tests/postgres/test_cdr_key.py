"""PostgreSQL's duplicate rule (migration 0016): one unique B-tree on (ts, callid, sn) keeps
the rule and gives the download order, on cdr and on every month; the way back to 0015 puts
the two B-trees of 0005 back."""

from __future__ import annotations

from sqlalchemy import Connection

from cdrgate.ingest.store import store_records
from cdrgate.storage import schema
from cdrgate.storage.cdrs import COLUMNS, row_values
from cdrgate.storage.db import Database
from tests.conftest import make_cdr
from tests.migrating import migrate

TWO_MONTHS = [
    make_cdr(callid="1.1", timestart="2026-01-31 23:59:59"),
    make_cdr(callid="1.2", timestart="2026-02-01 00:00:00"),
]
KEY = {"ts", "callid", "sn"}
AFTER_0016 = [(False, ("sn",)), (True, ("ts", "callid", "sn"))]  # (sn): a serial's rows
BEFORE_0016 = [(False, ("ts", "callid", "sn")), (True, ("sn", "callid", "ts"))]
# The parent, the default partition and the months TWO_MONTHS made.
TABLES = ("cdr", "cdr_default", "cdr_p202601", "cdr_p202602")


def _key_btrees(conn: Connection, table: str) -> list[tuple[bool, tuple[str, ...]]]:
    """(unique?, columns in order) of ``table``'s indexes over the key's columns only."""
    rows = conn.exec_driver_sql(
        "SELECT x.indisunique, array_agg(a.attname::text ORDER BY k.n) "
        "FROM pg_index AS x CROSS JOIN unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, n) "
        "JOIN pg_attribute AS a ON a.attrelid = x.indrelid AND a.attnum = k.attnum "
        "WHERE x.indrelid = %(table)s::regclass GROUP BY x.indexrelid, x.indisunique",
        {"table": table},
    ).all()
    return sorted((unique, tuple(columns)) for unique, columns in rows if set(columns) <= KEY)


def _insert_naming(conn: Connection, target: str) -> int:
    """Insert the first CDR again with ``ON CONFLICT (target) DO NOTHING``; the rows added."""
    names = ", ".join(COLUMNS)
    marks = ", ".join(["%s"] * len(COLUMNS))
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(
        f"INSERT INTO cdr ({names}) VALUES ({marks}) ON CONFLICT ({target}) DO NOTHING",
        row_values(TWO_MONTHS[0]),
    )
    added = cursor.rowcount
    cursor.close()
    return added


def test_one_unique_btree_keeps_the_duplicate_rule_and_the_download_order(pg_db: Database):
    store_records(pg_db, TWO_MONTHS)
    with pg_db.read() as conn:
        for table in TABLES:
            assert _key_btrees(conn, table) == AFTER_0016, table
    assert store_records(pg_db, TWO_MONTHS) == 0


def test_an_insert_naming_the_key_in_any_column_order_skips_a_stored_cdr(pg_db: Database):
    # PostgreSQL infers the arbiter from the set of columns: SQLite's spelling of the rule
    # plus ts, in the order of 0005's constraint or of 0016's, finds the one unique index.
    store_records(pg_db, TWO_MONTHS)
    with pg_db.write() as conn:
        assert _insert_naming(conn, "sn, callid, ts") == 0
        assert _insert_naming(conn, "ts, callid, sn") == 0
    with pg_db.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM cdr").scalar_one() == 2


def test_going_back_to_0015_puts_the_two_btrees_back_and_0016_makes_one_again(pg_db: Database):
    store_records(pg_db, TWO_MONTHS)
    migrate(pg_db, "downgrade", "0015")
    with pg_db.read() as conn:
        for table in TABLES:
            assert _key_btrees(conn, table) == BEFORE_0016, table
    assert store_records(pg_db, TWO_MONTHS) == 0
    migrate(pg_db, "upgrade", "head")
    with pg_db.read() as conn:
        for table in TABLES:
            assert _key_btrees(conn, table) == AFTER_0016, table
        assert conn.exec_driver_sql("SELECT count(*) FROM cdr").scalar_one() == 2
    assert store_records(pg_db, [*TWO_MONTHS, make_cdr(callid="1.3")]) == 1


def test_a_0016_released_without_the_sn_index_gets_it_from_the_upgrade(pg_db: Database):
    # 0016 came without ix_cdr_sn for a few hours (9099061): a store it upgraded is stamped
    # 0016 and never ran the line added later, so the sn filter read every row. 0018 makes it.
    store_records(pg_db, TWO_MONTHS)
    migrate(pg_db, "downgrade", "0016")
    with pg_db.write() as conn:
        conn.exec_driver_sql("DROP INDEX ix_cdr_sn")
    with pg_db.read() as conn:
        for table in TABLES:
            assert _key_btrees(conn, table) == [(True, ("ts", "callid", "sn"))], table
    assert schema.upgrade(pg_db) == schema.HEAD
    with pg_db.read() as conn:
        for table in TABLES:
            assert _key_btrees(conn, table) == AFTER_0016, table
    assert schema.upgrade(pg_db) == schema.HEAD  # a store 0016 gave the index: nothing to do
