"""pg_bulk.copy_rows, the Python path's insert on PostgreSQL: rows of months new to the store
go to their month partitions when those are attached while the transaction is inserting."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from cdrgate.storage import partitions, pg_bulk
from cdrgate.storage.cdrs import COLUMNS, row_values
from cdrgate.storage.db import Database
from cdrgate.timefmt import parse_pbx_time
from tests.conftest import make_cdr, migrated_postgres

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg() -> Iterator[Database]:
    with migrated_postgres() as database:
        yield database


@pytest.mark.parametrize("attached_by", ["copy_rows", "another writer"])
def test_rows_of_a_month_attached_mid_load_go_to_that_month_not_to_the_default(pg, attached_by):
    # One transaction, one batch a month: each batch's partition is attached on another
    # connection (partitions.ensure: copy_rows' own, or a writer's just before the batch)
    # after this transaction has already inserted into cdr.
    batches = [
        [
            row_values(
                make_cdr(callid=f"{month}.{day}", timestart=f"2033-{month:02d}-{day:02d} 00:00:00")
            )
            for day in range(1, 4)
        ]
        for month in range(1, 13)
    ]
    inserted = []
    with pg.write() as conn:
        for month, batch in enumerate(batches, 1):
            if attached_by == "another writer":
                partitions.ensure(pg.engine, [parse_pbx_time(f"2033-{month:02d}-01 00:00:00")])
            inserted.append(pg_bulk.copy_rows(conn, COLUMNS, batch))
    assert inserted == [3] * 12
    with pg.read() as conn:
        where = conn.exec_driver_sql(
            "SELECT tableoid::regclass::text, count(*) FROM cdr GROUP BY 1 ORDER BY 1"
        ).all()
    assert where == [(f"cdr_p2033{month:02d}", 3) for month in range(1, 13)]


def _prepared_insert(conn) -> Callable[[str, str], None]:
    """``put(callid, timestart)``: one row by an INSERT psycopg prepares on the server, as it
    does a statement run five times (the Yeastar import's INSERT ... SELECT, once a chunk).
    Executing a prepared statement opens no table by name, so it reads no catalog news."""
    names = ", ".join(COLUMNS)
    sql = f"INSERT INTO cdr ({names}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"
    cursor = conn.connection.driver_connection.cursor()

    def put(callid: str, timestart: str) -> None:
        cursor.execute(sql, row_values(make_cdr(callid=callid, timestart=timestart)), prepare=True)

    return put


def test_ensure_months_makes_a_transaction_already_inserting_route_to_the_months_it_attaches(pg):
    """docs/storage.md, "Import of a Yeastar file": the partition is attached on another
    connection while this transaction holds cdr's lock; without ensure_months' lock step the
    next prepared insert routes with the old partition list, to cdr_default, which refuses the
    row ("violates partition constraint")."""
    partitions.ensure(pg.engine, [parse_pbx_time("2033-01-01 00:00:00")])
    with pg.write() as conn:
        put = _prepared_insert(conn)
        put("1.1", "2033-01-15 10:00:00")  # cdr's lock held from here
        pg_bulk.ensure_months(conn, [parse_pbx_time("2033-02-15 10:00:00")])
        put("2.1", "2033-02-15 10:00:00")
    with pg.read() as conn:
        where = conn.exec_driver_sql(
            "SELECT tableoid::regclass::text, count(*) FROM cdr GROUP BY 1 ORDER BY 1"
        ).all()
    assert where == [("cdr_p203301", 1), ("cdr_p203302", 1)]
