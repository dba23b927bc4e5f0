"""pg_months.NewMonths: a load's months new to the store go into tables of their own and are
attached as cdr's partitions at the end, with the rules of any insert kept (duplicates
skipped, cdr_summary exact), nobody waiting for the load, and the ordinary insert taking over
when another connection made the month meanwhile."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Connection

from cdrgate.storage import partitions, summary
from cdrgate.storage.cdrs import COLUMNS, insert_records, row_values
from cdrgate.storage.db import Database
from cdrgate.storage.pg_months import NewMonths
from cdrgate.timefmt import parse_pbx_time
from tests.conftest import make_cdr, migrated_postgres

pytestmark = pytest.mark.postgres

MARCH = parse_pbx_time("2033-03-01 00:00:00")
APRIL = parse_pbx_time("2033-04-01 00:00:00")


@pytest.fixture
def pg() -> Iterator[Database]:
    with migrated_postgres() as database:
        yield database


def _march(*callids: str):
    return [
        make_cdr(callid=callid, timestart=f"2033-03-0{n + 1} 10:00:00")
        for n, callid in enumerate(callids)
    ]


def _put(conn: Connection, table: str, records) -> None:
    names = ", ".join(COLUMNS)
    marks = ", ".join(["%s"] * len(COLUMNS))
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    cursor.executemany(
        f"INSERT INTO {table} ({names}) VALUES ({marks})",
        [row_values(record) for record in records],
    )
    cursor.close()


def _stored(db: Database) -> list[tuple[str, str]]:
    """(partition, callid) of every row, in id order."""
    with db.read() as conn:
        rows = conn.exec_driver_sql(
            "SELECT tableoid::regclass::text, callid FROM cdr ORDER BY id"
        ).all()
    return [tuple(row) for row in rows]


def _summary_calls(db: Database) -> int:
    with db.read() as conn:
        return int(
            conn.exec_driver_sql("SELECT coalesce(sum(calls), 0) FROM cdr_summary").scalar_one()
        )


def test_a_new_month_is_attached_with_cdrs_indexes_and_keeps_the_duplicate_rule(pg):
    with pg.write() as conn:
        months = NewMonths(conn)
        assert months.split({MARCH}) == ({MARCH}, set())
        # "b" twice: the first, in id (file) order, stays.
        _put(conn, months.loading, _march("a", "b", "c") + _march("x", "b"))
        assert months.finish() == 1
    assert [callid for _, callid in _stored(pg)] == ["a", "b", "c", "x"]
    assert {table for table, _ in _stored(pg)} == {"cdr_p203303"}
    assert _summary_calls(pg) == 4
    with pg.read() as conn:
        attached = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_inherits AS i JOIN pg_index AS x ON x.indexrelid = i.inhrelid "
            "WHERE x.indrelid = 'cdr_p203303'::regclass"
        ).scalar_one()
        parents = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_index WHERE indrelid = 'cdr'::regclass"
        ).scalar_one()
        left = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'cdr_loading%%'"
        ).scalar_one()
    assert attached == parents == 6  # 0016: one B-tree holds the key and the order, (sn)
    assert left == 0
    # The month's unique index is cdr's duplicate rule from now on.
    with pg.write() as conn:
        assert insert_records(pg, conn, _march("a", "new")) == 1


def test_a_month_with_a_partition_or_rows_waiting_in_the_default_is_not_loaded_apart(pg):
    partitions.ensure(pg.engine, [APRIL])
    with pg.engine.begin() as conn:  # a row no partition took (its creation gave up)
        _put(conn, partitions.DEFAULT_PARTITION, _march("waiting"))
    with pg.write() as conn:
        months = NewMonths(conn)
        assert months.split({MARCH, APRIL}) == (set(), {MARCH, APRIL})
        assert months.finish() == 0


def test_readers_and_other_months_partitions_do_not_wait_for_a_load(pg):
    with pg.write() as conn:
        months = NewMonths(conn)
        months.split({MARCH})
        _put(conn, months.loading, _march("a"))
        with pg.engine.connect() as other:
            other.exec_driver_sql("SET lock_timeout = '300ms'")
            assert other.exec_driver_sql("SELECT count(*) FROM cdr").scalar_one() == 0
            other.rollback()
        # Made on its own connection, as every writer does: attached, not given up.
        partitions.ensure(pg.engine, [APRIL])
        with pg.read() as other:
            assert APRIL in partitions.existing(other).values()
        months.finish()
    assert _stored(pg) == [("cdr_p203303", "a")]


def test_a_month_made_meanwhile_by_another_writer_gets_the_rows_the_ordinary_way(pg):
    with pg.write() as conn:
        months = NewMonths(conn)
        months.split({MARCH})
        _put(conn, months.loading, _march("a", "b", "c"))
        # Another writer makes March and stores "b" first (straight into the partition: a
        # writer through cdrs would wait for this transaction's insert lock).
        partitions.ensure(pg.engine, [MARCH])
        with pg.engine.begin() as other:
            _put(other, "cdr_p203303", _march("x", "b"))
            summary.add_table(other, "cdr_p203303")
        assert months.finish() == 1
    assert sorted(callid for _, callid in _stored(pg)) == ["a", "b", "c", "x"]
    assert {table for table, _ in _stored(pg)} == {"cdr_p203303"}
    assert _summary_calls(pg) == 4
