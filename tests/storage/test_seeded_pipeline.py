"""The seed's pipeline (storage/seeded_pipeline.py) when its fast path for cdr_summary cannot
serve: a chunk some of whose rows were stored already is counted from the rows this
transaction added, not from the helper's counts of the whole chunk."""

from __future__ import annotations

import threading
from typing import get_args

import pytest

from cdrgate.ingest.store import store_records
from cdrgate.seed import SeedPlan, generate, slots
from cdrgate.services.stats import store_stats
from cdrgate.storage import query as q
from cdrgate.storage import schema, seeded_pipeline, summary
from cdrgate.storage.db import Database

PLAN = SeedPlan(count=2000, seed=4, start="2026-01-01 00:00:00", days=120)


@pytest.fixture
def sqlite_db(make_db, tmp_path) -> Database:
    database = make_db(f"sqlite:///{tmp_path / 'seeded.db'}")
    schema.upgrade(database)
    return database


def _summary(conn) -> list[tuple[int, str, str, int, int, int]]:
    rows = conn.exec_driver_sql(
        "SELECT hour, status, type, calls, talk, duration FROM cdr_summary WHERE calls > 0 "
        "ORDER BY hour, status, type"
    )
    return [tuple(row) for row in rows]


def _counted_from_rows(conn) -> list[tuple[int, str, str, int, int, int]]:
    summary.count_into(conn, "cdr", "temp.from_rows")
    rows = conn.exec_driver_sql(
        "SELECT hour, status, type, calls, talk, duration FROM temp.from_rows "
        "ORDER BY hour, status, type"
    )
    return [tuple(row) for row in rows]


def _note(monkeypatch, name: str, way: str, ways: list[str]) -> None:
    """Record in ``ways`` each call of ``summary.<name>``, which then runs as ever."""
    real = getattr(summary, name)

    def noted(*args):
        ways.append(way)
        return real(*args)

    monkeypatch.setattr(summary, name, noted)


def test_chunks_holding_stored_rows_count_only_the_rows_added(sqlite_db, monkeypatch):
    records = [record for record, _ in generate(PLAN)]
    already = records[300:320] + records[1500:1505]  # in two of the eight chunks
    assert store_records(sqlite_db, already) == len(already)
    hours = slots(PLAN)
    chunks = [hours[len(hours) * i // 8 : len(hours) * (i + 1) // 8] for i in range(8)]
    ways: list[str] = []
    _note(monkeypatch, "add_counted", "helper's counts", ways)
    _note(monkeypatch, "add_stored", "rows added", ways)
    with sqlite_db.write() as conn:
        inserted = seeded_pipeline.store_empty(conn, PLAN, chunks)
    assert inserted == PLAN.count - len(already)
    assert sorted(ways) == ["helper's counts"] * 6 + ["rows added"] * 2
    with sqlite_db.read() as conn:
        assert _summary(conn) == _counted_from_rows(conn)
        by_type = dict(conn.exec_driver_sql("SELECT type, count(*) FROM cdr GROUP BY type").all())
        everything = q.Filters()
        for group in get_args(q.Group):  # /v1/stats: from the summary where it can
            answer = q.read_stats(conn, everything, group)
            raw = [tuple(int(v) if i else v for i, v in enumerate(row))
                   for row in conn.execute(q.stats_select(everything, group))]  # fmt: skip
            assert answer == raw, group
    shown = store_stats(sqlite_db)  # `cdrgate stats`: its counts are read from cdr_summary
    assert (shown.rows, shown.types) == (PLAN.count, by_type)


@pytest.mark.parametrize("library", seeded_pipeline.MAKERS)
def test_stopping_the_line_interrupts_a_makers_running_statement(library):
    """A chunk takes seconds to make; a Ctrl-C or a failed writer must not wait for it."""
    line = seeded_pipeline._Line(count=8, makers=len(seeded_pipeline.MAKERS))
    outcome: list[BaseException] = []
    started = threading.Event()

    def maker() -> None:
        with line.connection(library) as conn:
            started.set()
            try:  # never ends unless interrupted
                list(conn.execute(_ENDLESS))
            except Exception as exc:  # each library names it its own way
                outcome.append(exc)

    thread = threading.Thread(target=maker, daemon=True)  # unstopped, it would run on
    thread.start()
    started.wait(10)
    # An interrupt before the statement begins is lost (SQLite clears it when a statement
    # starts on an idle connection), so stop until the statement has heard it.
    for _ in range(100):
        line.stop()
        thread.join(0.05)
        if not thread.is_alive():
            break
    assert not thread.is_alive()
    assert len(outcome) == 1 and "interrupt" in str(outcome[0]).lower()
    assert line.working == [] and line.take() is None


_ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
