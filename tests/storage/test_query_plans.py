"""The download queries use the indexes on a large table, on both engines (EXPLAIN)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection, Select

from cdrgate.ingest.seeding import seed_database
from cdrgate.seed import SeedPlan
from cdrgate.storage import recordings
from cdrgate.storage.cdrs import (
    CdrQuery,
    _sqlite_statement,
    export_select,
    read_whole,
)
from cdrgate.storage.db import Database
from cdrgate.timefmt import parse_pbx_time
from tests.day_read_plan import day_read_scans

ONE_DAY = CdrQuery(
    parse_pbx_time("2026-02-10 00:00:00"), parse_pbx_time("2026-02-10 23:59:59"), ("1007",)
)
WHOLE_DAY = CdrQuery(
    parse_pbx_time("2026-02-10 00:00:00"), parse_pbx_time("2026-02-10 23:59:59"), None
)


def _large_table(db: Database) -> None:
    # 80 000 CDRs over three months: one extension's day is ~0.05% of the table.
    seed_database(db, SeedPlan(count=80_000, seed=3, start="2026-01-01 00:00:00", days=90))
    with db.write() as conn:
        conn.exec_driver_sql("ANALYZE cdr")


def _sql(conn: Connection, query: CdrQuery | Select[Any]) -> str:
    on_sqlite = conn.dialect.name == "sqlite"
    stmt = export_select(query, sqlite=on_sqlite) if isinstance(query, CdrQuery) else query
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    return str(compiled)


def _plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [node]
    for child in node.get("Plans", []):
        nodes.extend(_plan_nodes(child))
    return nodes


def _postgres_plan(conn: Connection, query: CdrQuery | Select[Any]) -> list[dict[str, Any]]:
    plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + _sql(conn, query)).scalar_one()
    return _plan_nodes(plan[0]["Plan"])


def _sqlite_plan(conn: Connection, query: CdrQuery | Select[Any]) -> list[str]:
    return [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + _sql(conn, query))]


def test_one_day_queries_are_index_range_scans_in_one_partition_on_a_large_table(db: Database):
    _large_table(db)
    with db.read() as conn:
        if db.is_sqlite:
            one_day, whole_day = _sqlite_plan(conn, ONE_DAY), _sqlite_plan(conn, WHOLE_DAY)
            for index in ("ix_cdr_callfrom_ts (callfrom=?", "ix_cdr_callto_ts (callto=?"):
                # Covering: the sides read row ids from their index alone, then each row once.
                covering = f"USING COVERING INDEX {index} AND ts>? AND ts<?)"
                assert any(covering in d for d in one_day), one_day
            assert any("USING INTEGER PRIMARY KEY (rowid=?)" in d for d in one_day), one_day
            assert not any(d.startswith("SCAN cdr") for d in one_day), one_day
            assert any("USING INDEX ix_cdr_ts_callid_sn (ts>? AND ts<?)" in d for d in whole_day)
            return
        one_ext, all_exts = _postgres_plan(conn, ONE_DAY), _postgres_plan(conn, WHOLE_DAY)
    for nodes in (one_ext, all_exts):
        tables = {n["Relation Name"] for n in nodes if "Relation Name" in n}
        assert tables == {"cdr_p202602"}, nodes  # the other months are pruned
        assert not any(n["Node Type"] == "Seq Scan" for n in nodes), nodes
    used = " ".join(n.get("Index Name", "") for n in one_ext)
    assert "callfrom_ts" in used and "callto_ts" in used, one_ext
    assert any("ts_callid_sn" in n.get("Index Name", "") for n in all_exts), all_exts


def test_asking_whether_a_cdr_names_a_recording_probes_the_partial_recording_index(db: Database):
    # The index holds only the CDRs that name a file (migration 0011); a question that did
    # not say so would read the whole table instead.
    _large_table(db)
    with db.read() as conn:
        name = conn.exec_driver_sql("SELECT max(recording) FROM cdr").scalar_one()
        assert name
        question = recordings.referenced_select(name)
        if db.is_sqlite:
            plan = _sqlite_plan(conn, question)
            assert any("INDEX ix_cdr_recording (recording=?)" in d for d in plan), plan
            assert not any(d.startswith("SCAN cdr") for d in plan), plan
            return
        nodes = _postgres_plan(conn, question)
    # Every month holding CDRs is probed through its index (the empty default partition may
    # be scanned: it has no rows to read).
    months = [n for n in nodes if n.get("Relation Name", "").startswith("cdr_p")]
    assert len(months) == 3, nodes
    assert all("recording" in n.get("Index Name", "") for n in months), nodes


def test_a_small_downloads_read_on_the_driver_scans_each_index_over_the_range_alone(
    db: Database,
):
    # The read in a redeem's transaction (storage/cdrs.py, ``_either_side``): one OR of the
    # two index ranges, its row ids kept in memory, where ``id IN (... UNION ALL ...)`` built
    # a temporary B-tree for them on every read.
    if not db.is_sqlite:
        pytest.skip("SQLite's plan (PostgreSQL's: the next test)")
    _large_table(db)
    stmt = _sqlite_statement(True, True, 2)
    params = {"exts": ["1007", "1008"], "start": ONE_DAY.start_ts, "end": ONE_DAY.end_ts}
    with db.read() as conn:
        explain = conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + stmt.sql, stmt.args({**params, "limit": 1001})
        )
        plan = [row[3] for row in explain]
    assert any(d.startswith("MULTI-INDEX OR") for d in plan), plan
    # The callee's side reads its covering index alone (migration 0017); the caller's reads
    # the columns from its index too, seeking the table only when one is not there (SQLite's
    # deferred seek), so its plan does not say COVERING.
    for index in (
        "INDEX ix_cdr_callfrom_ts (callfrom=?",
        "COVERING INDEX ix_cdr_callto_ts (callto=?",
    ):
        assert any(f"USING {index} AND ts>? AND ts<?)" in d for d in plan), plan
    assert not any("LIST SUBQUERY" in d or d.startswith("SCAN cdr") for d in plan), plan


def test_a_small_downloads_whole_read_sorts_in_memory_without_a_temporary_b_tree(db: Database):
    # With a LIMIT on its ORDER BY, SQLite sorts in a temporary B-tree (a page zeroed and
    # filled on every read); the whole read takes no LIMIT and SQLite's sorter orders it.
    if not db.is_sqlite:
        pytest.skip("the driver statements are SQLite's")
    _large_table(db)
    ran: list[str] = []
    with db.write() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        raw.set_trace_callback(ran.append)
        try:
            assert read_whole(conn, ONE_DAY, 1000)
        finally:
            raw.set_trace_callback(None)
        (sql,) = [text for text in ran if text.lstrip().upper().startswith("SELECT")]
        program = [
            row[1] for row in raw.execute("EXPLAIN " + sql, (ONE_DAY.start_ts,) * sql.count("?"))
        ]
    assert "SorterOpen" in program and "OpenEphemeral" not in program, program


def test_a_small_downloads_read_on_postgresql_is_two_index_only_scans_of_one_partition(
    db: Database,
):
    # ``_both_sides`` on PostgreSQL: each side pruned to the range's month and read from its
    # covering index alone (migration 0017), no table page visited: the seed vacuumed the
    # months it wrote (storage/visible.py), so the visibility map spares every heap fetch.
    # The BitmapOr it replaced read each row's table page (~61 a download at 1M rows).
    if db.is_sqlite:
        pytest.skip("PostgreSQL's plan (SQLite's: the test above)")
    _large_table(db)
    nodes = day_read_scans(db, ["1007", "1008"], ONE_DAY.start_ts, ONE_DAY.end_ts)
    tables = {n["Relation Name"] for n in nodes if "Relation Name" in n}
    assert tables == {"cdr_p202602"}, nodes  # the other months are pruned
    scans = [n for n in nodes if "Relation Name" in n]
    assert [n["Node Type"] for n in scans] == ["Index Only Scan"] * 2, nodes
    used = " ".join(n["Index Name"] for n in scans)
    assert "callfrom_ts" in used and "callto_ts" in used, nodes
    assert sum(n["Actual Rows"] for n in scans) > 0, nodes
    assert [n["Heap Fetches"] for n in scans] == [0, 0], nodes
