"""The query API's pages are index range scans on a large table, on both engines (EXPLAIN)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Select

from cdrgate.ingest.seeding import seed_database
from cdrgate.seed import SeedPlan
from cdrgate.storage import query as q
from cdrgate.storage.db import Database
from cdrgate.timefmt import parse_pbx_time

FEBRUARY = q.Filters(
    parse_pbx_time("2026-02-01 00:00:00"), parse_pbx_time("2026-03-01 00:00:00"), ("1007",)
)
DEEP_PAGE = q.Position(parse_pbx_time("2026-02-10 12:00:00"), 40_000)


def _plan(conn: Connection, stmt: Select[Any]) -> str:
    sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    if conn.dialect.name == "sqlite":
        return "\n".join(row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
    return "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + sql))


def test_one_number_first_page_and_a_deep_cursor_page_scan_index_ranges(db: Database):
    # 80 000 CDRs over three months: one extension's month is ~1% of the table.
    seed_database(db, SeedPlan(count=80_000, seed=3, start="2026-01-01 00:00:00", days=90))
    with db.write() as conn:
        conn.exec_driver_sql("ANALYZE cdr")
    with db.read() as conn:
        number = _plan(conn, q.list_select(FEBRUARY, q.Sort(), None, 101))
        deep = _plan(conn, q.list_select(q.Filters(), q.Sort(), DEEP_PAGE, 101))
    if db.is_sqlite:
        assert "ix_cdr_callfrom_ts (callfrom=? AND ts>? AND ts<?)" in number, number
        assert "ix_cdr_callto_ts (callto=? AND ts>? AND ts<?)" in number, number
        assert "ix_cdr_ts_callid_sn (ts<?)" in deep, deep
        for plan in (number, deep):
            assert "SCAN cdr\n" not in plan + "\n", plan
        return
    assert "callfrom_ts" in number and "callto_ts" in number, number
    assert "cdr_p202601" not in number and "cdr_p202603" not in number, number  # pruned
    assert "ts_callid_sn" in deep, deep
    for plan in (number, deep):
        assert "Seq Scan" not in plan, plan
