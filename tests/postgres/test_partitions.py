"""Monthly partitions on PostgreSQL: where rows land, duplicates, and cheap retention."""

from __future__ import annotations

from sqlalchemy import text

from cdrgate.ingest.store import store_records
from cdrgate.services.retention import RetentionPolicy, prune
from cdrgate.storage import cdrs, partitions
from cdrgate.storage.cdrs import CdrQuery
from cdrgate.storage.db import Database
from cdrgate.storage.pg_months import NewMonths
from cdrgate.storage.tables import cdr
from cdrgate.timefmt import parse_pbx_time
from tests.conftest import make_cdr

THREE_MONTHS = [
    make_cdr(callid="1.1", timestart="2026-01-31 23:59:59"),
    make_cdr(callid="1.2", timestart="2026-02-01 00:00:00"),
    make_cdr(callid="1.3", timestart="2026-02-15 12:00:00"),
    make_cdr(callid="1.4", timestart="2026-03-01 08:00:00"),
]


def _where(db: Database) -> dict[str, str]:
    with db.read() as conn:
        rows = conn.execute(text("SELECT callid, tableoid::regclass::text FROM cdr"))
        return {callid: table for callid, table in rows}


def _export(db: Database) -> list[str]:
    query = CdrQuery(parse_pbx_time("2026-01-01 00:00:00"), parse_pbx_time("2026-12-31 23:59:59"))
    with db.read() as conn:
        return [line.split(",")[0] for line in cdrs.read_lines(conn, query)]


def test_cdrs_land_in_the_partition_of_their_month(pg_db: Database):
    assert store_records(pg_db, THREE_MONTHS) == 4
    assert _where(pg_db) == {
        "1.1": "cdr_p202601",
        "1.2": "cdr_p202602",
        "1.3": "cdr_p202602",
        "1.4": "cdr_p202603",
    }


def test_a_cdr_stored_twice_is_kept_once(pg_db: Database):
    store_records(pg_db, THREE_MONTHS[:2])
    assert store_records(pg_db, THREE_MONTHS) == 2
    assert store_records(pg_db, [THREE_MONTHS[0], THREE_MONTHS[0]]) == 0
    assert _export(pg_db) == ["1.1", "1.2", "1.3", "1.4"]


def test_rows_caught_by_the_default_partition_move_to_their_month_when_it_is_created(
    pg_db: Database,
):
    # A writer that bypasses the bulk path: the row has no month partition to go to.
    row = dict(zip(cdrs.COLUMNS, cdrs.row_values(THREE_MONTHS[3]), strict=True))
    with pg_db.write() as conn:
        conn.execute(cdr.insert().values(**row))
    assert _where(pg_db) == {"1.4": "cdr_default"}
    store_records(pg_db, THREE_MONTHS)
    assert _where(pg_db)["1.4"] == "cdr_p202603"
    assert _export(pg_db) == ["1.1", "1.2", "1.3", "1.4"]


def test_retention_drops_whole_months_and_leaves_the_rest(pg_db: Database):
    store_records(pg_db, THREE_MONTHS)
    with pg_db.write() as conn:
        dropped, _busy = partitions.drop_months_before(conn, parse_pbx_time("2026-02-20 00:00:00"))
        remaining = set(partitions.existing(conn))
    assert dropped == 1
    assert remaining == {"cdr_p202602", "cdr_p202603"}
    assert _export(pg_db) == ["1.2", "1.3", "1.4"]


def test_month_boundaries_are_calendar_months():
    start = partitions.month_start(parse_pbx_time("2024-02-29 23:59:59"))
    assert start == parse_pbx_time("2024-02-01 00:00:00")
    assert partitions.next_month(start) == parse_pbx_time("2024-03-01 00:00:00")
    december = parse_pbx_time("2025-12-01 00:00:00")
    assert partitions.next_month(december) == parse_pbx_time("2026-01-01 00:00:00")
    assert partitions.partition_name(december) == "cdr_p202512"


def test_a_nul_byte_is_dropped_on_both_engines_and_the_row_stored(pg_db: Database):
    # PostgreSQL text cannot hold NUL; storage drops it everywhere so both engines agree.
    store_records(pg_db, [THREE_MONTHS[0], make_cdr(callid="1.9", callto="02\x0015")])
    with pg_db.read() as conn:
        callto = conn.exec_driver_sql("SELECT callto FROM cdr WHERE callid = '1.9'").scalar_one()
    assert callto == "0215"


def test_a_busy_month_is_left_for_the_next_run_and_blocks_nobody_for_long(pg_db: Database):
    """DROP of a partition waits for every open reader of ``cdr``, and every later query
    would queue behind it: retention gives up after the lock timeout instead."""
    store_records(pg_db, THREE_MONTHS)
    policy = RetentionPolicy(max_age_days=1)
    now = parse_pbx_time("2026-02-20 00:00:00") + 86400
    with pg_db.read() as reader:  # a download's snapshot on January's rows
        reader.exec_driver_sql("SELECT count(*) FROM cdr_p202601").scalar_one()
        report = prune(pg_db, policy, now)
        assert report.removed == 0
        with pg_db.read() as conn:  # still served while the reader lives
            assert _export_in(conn) == ["1.1", "1.2", "1.3", "1.4"]
    report = prune(pg_db, policy, now)
    assert report.removed == 3  # January dropped, then February's rows before the cutoff
    assert _export(pg_db) == ["1.4"]


def _export_in(conn) -> list[str]:
    return [line.split(",")[0] for line in cdrs.read_lines(conn, cdrs.CdrQuery(0, 2**40))]


def test_the_indexed_text_columns_compare_bytes_in_every_month(pg_db: Database):
    # Migration 0015: byte order (SQLite's), whichever way a month's partition was made:
    # by partitions.ensure for a few rows, or loaded apart and attached for a bulk load.
    store_records(pg_db, THREE_MONTHS[:1])
    with pg_db.write() as conn:
        months = NewMonths(conn)
        months.split({partitions.month_start(parse_pbx_time("2026-05-01 00:00:00"))})
        months.finish()
    with pg_db.read() as conn:
        collations = conn.exec_driver_sql(
            "SELECT DISTINCT a.attrelid::regclass::text, a.attname, c.collname "
            "FROM pg_attribute AS a JOIN pg_collation AS c ON c.oid = a.attcollation "
            "WHERE a.attrelid IN ('cdr'::regclass, 'cdr_p202601'::regclass, "
            "'cdr_p202605'::regclass, 'cdr_default'::regclass) "
            "AND a.attname IN ('sn', 'callid', 'callfrom', 'callto', 'recording')"
        ).all()
    assert len(collations) == 4 * 5
    assert {collation for _, _, collation in collations} == {"C"}
