"""pg_seed_months: a seed into an empty PostgreSQL store makes its months on two connections,
and keeps every rule of a seed: the same rows, ids in time order, cdr_summary exact, readers
never seeing half of it, and nothing left behind when it fails or is interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from cdrgate.ingest.seeding import seed_database
from cdrgate.seed import SeedPlan, generate, slots
from cdrgate.storage import partitions, pg_months, pg_seed_months, seeded, summary
from cdrgate.storage.db import Database
from cdrgate.storage.pg_seed_months import making_order, plan_months
from cdrgate.timefmt import parse_pbx_time
from tests.conftest import migrated_postgres
from tests.interruptible import popen_interruptible
from tests.waiting import wait_until

pytestmark = pytest.mark.postgres

DEADLINE_S = 60.0  # generous: the machine may be shared; a passing wait ends at once
# Four months, two for each connection.
PLAN = SeedPlan(count=4000, seed=5, start="2026-01-01 00:00:00", days=120, extensions=9)
MONTHS = {"cdr_p202601", "cdr_p202602", "cdr_p202603", "cdr_p202604"}


@pytest.fixture
def pg() -> Iterator[Database]:
    with migrated_postgres() as database:
        yield database


def _scalar(db: Database, sql: str) -> Any:
    with db.read() as conn:
        return conn.exec_driver_sql(sql).scalar_one()


def _seed_tables(db: Database) -> list[str]:
    with db.read() as conn:
        return list(
            conn.exec_driver_sql(
                "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace "
                "AND relname LIKE 'cdr\\_seed\\_%%'"
            ).scalars()
        )


def _partitions(db: Database) -> set[str]:
    with db.read() as conn:
        return set(
            conn.exec_driver_sql(
                "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'cdr'::regclass AND c.relname <> 'cdr_default'"
            ).scalars()
        )


def _assert_as_before_a_seed(db: Database) -> None:
    assert _scalar(db, "SELECT count(*) FROM cdr") == 0
    assert _scalar(db, "SELECT count(*) FROM cdr_summary") == 0
    assert _seed_tables(db) == []
    assert _partitions(db) == set()


def test_a_seed_over_months_stores_the_generated_rows_in_id_order(pg):
    assert seed_database(pg, PLAN) == PLAN.count
    with pg.read() as conn:
        stored = conn.exec_driver_sql("SELECT id, ts, line FROM cdr ORDER BY id").all()
    generated = list(generate(PLAN))
    assert [line for _, _, line in stored] == [line for _, line in generated]
    assert [ts for _, ts, _ in stored] == [parse_pbx_time(r.timestart) for r, _ in generated]
    assert [id_ for id_, _, _ in stored] == list(range(1, PLAN.count + 1))
    # The sequence is left past the last id: the next row stored follows the seed's.
    assert _scalar(pg, "SELECT nextval('cdr_id_seq')") == PLAN.count + 1
    assert _scalar(pg, "SELECT sum(calls) FROM cdr_summary") == PLAN.count
    assert _scalar(pg, "SELECT sum(talk) FROM cdr_summary") == _scalar(
        pg, "SELECT sum(talkduraction) FROM cdr"
    )
    assert _partitions(pg) == MONTHS
    assert _seed_tables(pg) == []


def test_the_months_are_made_largest_first_so_the_connections_end_together():
    # Not a rule of the stored rows (ids follow seq whatever the order), but of the seed's
    # time: the month left for last is the one a connection finishes alone.
    months = plan_months(slots(SeedPlan(count=1_000_000)), 0)
    order = making_order(months)
    assert sorted(order, key=lambda month: month.start) == months
    assert [month.rows for month in order] == sorted((m.rows for m in months), reverse=True)
    assert order[-1].start == parse_pbx_time("2026-02-01 00:00:00")  # 28 days: the smallest


def _summary(db: Database) -> list[tuple[Any, ...]]:
    with db.read() as conn:
        return [
            tuple(row)
            for row in conn.exec_driver_sql(
                "SELECT hour, status, type, calls, talk, duration FROM cdr_summary "
                "WHERE calls > 0 ORDER BY hour, status, type"
            )
        ]


def _counted_from_rows(db: Database) -> list[tuple[Any, ...]]:
    with db.read() as conn:
        return [
            tuple(row)
            for row in conn.exec_driver_sql(
                "SELECT ts / 3600 * 3600, status, type, count(*), sum(talkduraction), "
                "sum(callduraction) FROM cdr GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
            )
        ]


def test_cdr_summary_is_the_count_of_the_seeded_rows(pg):
    seed_database(pg, PLAN)
    assert _summary(pg) == _counted_from_rows(pg)


def test_hours_left_at_zero_in_cdr_summary_are_counted_into(pg):
    # Rows deleted from the store leave their hours in cdr_summary at zero; a month's counts
    # then meet one of them (a plain INSERT of them fails) and are added to it.
    record, _ = next(generate(PLAN))
    hour = parse_pbx_time(record.timestart) // 3600 * 3600
    with pg.write() as conn:
        conn.exec_driver_sql(
            "INSERT INTO cdr_summary (hour, status, type, calls, talk, duration) "
            "VALUES (%(hour)s, %(status)s, %(type)s, 0, 0, 0)",
            {"hour": hour, "status": record.status, "type": record.type},
        )
    assert seed_database(pg, PLAN) == PLAN.count
    assert _summary(pg) == _counted_from_rows(pg)
    assert _partitions(pg) == MONTHS
    assert _seed_tables(pg) == []


def test_a_month_is_counted_while_its_plain_indexes_are_built(pg, monkeypatch):
    # The seed's connection counts a month as soon as its rows are committed: the last
    # month's count is then not alone at the end, after every helper is done. Each month's
    # plain index builds here wait until the month has been counted (the seed would fail at
    # the deadline if the count waited for them).
    counted: set[str] = set()
    condition = threading.Condition()
    add_new, plain_indexes = summary.add_table_new, pg_months.plain_indexes

    def counting(conn, table):
        add_new(conn, table)
        with condition:
            counted.add(table)
            condition.notify_all()

    def building_once_counted(conn, table):
        with condition:
            assert condition.wait_for(lambda: table in counted, DEADLINE_S), table
        return plain_indexes(conn, table)

    monkeypatch.setattr(summary, "add_table_new", counting)
    monkeypatch.setattr(pg_months, "plain_indexes", building_once_counted)
    assert seed_database(pg, PLAN) == PLAN.count
    assert len(counted) == len(MONTHS)
    assert _summary(pg) == _counted_from_rows(pg)
    assert _partitions(pg) == MONTHS


def test_the_last_months_are_made_in_pieces_by_both_connections(pg, monkeypatch):
    # The connections end together: the last months (in making order), as many as there
    # are connections, are made in pieces of whole hours that both take in turn, into the
    # month's one table, each piece committed; the others whole. A piece of the first month
    # made in pieces waits until the other connection has taken one too.
    monkeypatch.setattr(pg_seed_months, "PIECE_ROWS", 150)
    order = making_order(plan_months(slots(PLAN), 0))
    split = order[-pg_seed_months.CONNECTIONS :]
    first_split = {hours[0].first_seq for hours in split[0].pieces(150)}
    makers: dict[int, str] = {}  # a piece's first row -> the thread that made it
    condition = threading.Condition()
    real = seeded.bind_params

    def noting(plan, first, last):
        with condition:
            makers[first] = threading.current_thread().name
            condition.notify_all()
            if first in first_split:
                assert condition.wait_for(
                    lambda: len({makers[f] for f in first_split if f in makers}) > 1, DEADLINE_S
                )
        return real(plan, first, last)

    monkeypatch.setattr(pg_seed_months, "bind_params", noting)
    assert seed_database(pg, PLAN) == PLAN.count
    with pg.read() as conn:
        ids = conn.exec_driver_sql("SELECT id FROM cdr ORDER BY ts, id").scalars()
        assert list(ids) == list(range(1, PLAN.count + 1))
        for month in order:
            name = partitions.partition_name(month.start)
            # One transaction a piece (rows of one transaction share its xmin).
            made_by = conn.exec_driver_sql(f"SELECT count(DISTINCT xmin::text) FROM {name}")
            pieces = len(month.pieces(150)) if month in split else 1
            assert made_by.scalar_one() == pieces
    assert all(len(month.pieces(150)) > 1 for month in split)
    assert len({makers[first] for first in first_split}) == 2
    assert _summary(pg) == _counted_from_rows(pg)
    assert _seed_tables(pg) == []


def test_a_seeded_month_is_a_partition_like_any_other(pg):
    seed_database(pg, PLAN)
    with pg.read() as conn:
        # Indexes attached to cdr's and named as a month's; no CHECK left from the making.
        indexes = conn.exec_driver_sql(
            "SELECT x.indexrelid::regclass::text FROM pg_index AS x JOIN pg_inherits AS i "
            "ON i.inhrelid = x.indexrelid WHERE x.indrelid = 'cdr_p202602'::regclass"
        ).scalars()
        parent = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_index WHERE indrelid = 'cdr'::regclass"
        ).scalar_one()
        checks = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'cdr_p202602'::regclass "
            "AND contype = 'c'"
        ).scalar_one()
        names = list(indexes)
    assert len(names) == parent and all(name.startswith("cdr_p202602") for name in names)
    assert checks == 0


def test_autovacuum_leaves_the_months_alone_until_they_are_attached(pg, monkeypatch):
    # A month's table is committed while the seed goes on: autovacuum would VACUUM and
    # ANALYZE it mid-seed (and hold a lock an index build or the attach waits behind). Off
    # while the month is made, reset once it is cdr's partition.
    options: dict[str, Any] = {}
    add_new = summary.add_table_new

    def noting(conn, table):
        options[table] = conn.exec_driver_sql(
            f"SELECT reloptions FROM pg_class WHERE oid = '{table}'::regclass"
        ).scalar_one()
        add_new(conn, table)

    monkeypatch.setattr(summary, "add_table_new", noting)
    seed_database(pg, PLAN)
    assert len(options) == len(MONTHS)
    assert all(value == ["autovacuum_enabled=false"] for value in options.values()), options
    with pg.read() as conn:
        after = conn.exec_driver_sql(
            "SELECT relname, reloptions FROM pg_class WHERE relkind = 'r' AND relname LIKE 'cdr\\_p2%%'"
        ).all()
    assert {name for name, _ in after} == MONTHS
    assert all(value is None for _, value in after)


def test_orphans_of_a_seed_killed_outright_are_dropped_by_the_next(pg):
    # A client killed with SIGKILL cannot drop the months its helpers committed; no backend
    # has pid 0.
    with pg.write() as conn:
        conn.exec_driver_sql("CREATE TABLE cdr_seed_0_202601 (LIKE cdr)")
        conn.exec_driver_sql("CREATE TABLE cdr_seed_0_202601_counts (hour bigint)")
    # A seed still running (its backend alive: this one, held open) keeps its tables.
    with pg.engine.connect() as alive:
        pid = alive.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        alive.exec_driver_sql(f"CREATE TABLE cdr_seed_{pid}_202601 (LIKE cdr)")
        alive.commit()
        assert seed_database(pg, PLAN) == PLAN.count
        assert _seed_tables(pg) == [f"cdr_seed_{pid}_202601"]


def test_a_helper_failing_mid_way_leaves_the_store_as_before(pg, monkeypatch):
    built: list[str] = []
    real = pg_months.build_indexes

    def fail_on_the_third(conn, table, plain=True):
        built.append(table)
        if len(built) == 3:
            raise RuntimeError("disk full")
        return real(conn, table, plain)

    monkeypatch.setattr(pg_months, "build_indexes", fail_on_the_third)
    with pytest.raises(RuntimeError, match="disk full"):
        seed_database(pg, PLAN)
    _assert_as_before_a_seed(pg)
    monkeypatch.setattr(pg_months, "build_indexes", real)
    assert seed_database(pg, PLAN) == PLAN.count
    assert _scalar(pg, "SELECT min(id) FROM cdr") > 0


def test_a_failed_attach_leaves_the_store_as_before(pg, monkeypatch):
    # The months' tables are renamed and attached in the seed's transaction: rolled back,
    # they are the helpers' committed tables again, and dropped too.
    attached: list[str] = []
    real = pg_months.attach

    def fail_on_the_second(conn, start, table):
        attached.append(table)
        done = real(conn, start, table)
        if len(attached) == 2:
            raise RuntimeError("no room")
        return done

    monkeypatch.setattr(pg_months, "attach", fail_on_the_second)
    with pytest.raises(RuntimeError, match="no room"):
        seed_database(pg, PLAN)
    _assert_as_before_a_seed(pg)


def test_a_month_made_meanwhile_by_another_writer_takes_the_seeds_rows_counted_once(pg):
    february = parse_pbx_time("2026-02-10 00:00:00")
    made: list[int] = []

    def make_february_once(rows: int) -> None:
        # While the helpers work, another connection makes February's partition.
        if not made:
            partitions.ensure(pg.engine, [february])
        made.append(rows)

    assert seed_database(pg, PLAN, make_february_once) == PLAN.count
    assert sum(made) == PLAN.count
    with pg.read() as conn:
        ids = conn.exec_driver_sql("SELECT id FROM cdr ORDER BY ts, id").scalars()
        assert list(ids) == list(range(1, PLAN.count + 1))
    assert _scalar(pg, "SELECT sum(calls) FROM cdr_summary") == PLAN.count
    assert _scalar(pg, "SELECT count(*) FROM cdr_default") == 0
    assert _partitions(pg) == MONTHS
    assert _seed_tables(pg) == []


def _seed_rows(db: Database) -> int:
    """The rows committed so far into the seed's months' tables (tables only: their indexes,
    named alike, are in ``_seed_tables`` too once a month is built)."""
    with db.read() as conn:
        tables = conn.exec_driver_sql(
            "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace "
            "AND relkind = 'r' AND relname LIKE 'cdr\\_seed\\_%%'"
        ).scalars()
        return sum(
            conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one()
            for table in list(tables)
        )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_seed_interrupted_mid_way_leaves_the_store_as_before(pg, signum):
    # Enough rows that the months take a while: the signal lands while the helpers work.
    command = [sys.executable, "-m", "cdrgate", "seed", "--count", "300000", "--database", pg.url]
    with popen_interruptible(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=dict(os.environ)
    ) as process:
        try:
            # The months' tables are made empty up front: wait for committed rows in one.
            wait_until(lambda: _seed_rows(pg) > 0, "a month made by a helper", DEADLINE_S)
            # Meanwhile readers see the store as it was, without waiting.
            with pg.read() as conn:
                conn.exec_driver_sql("SET LOCAL lock_timeout = '5s'")
                assert conn.exec_driver_sql("SELECT count(*) FROM cdr").scalar_one() == 0
            process.send_signal(signum)
            _out, err = process.communicate(timeout=DEADLINE_S)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode != 0, err
    _assert_as_before_a_seed(pg)
    assert seed_database(pg, PLAN) == PLAN.count
