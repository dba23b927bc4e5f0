"""pg_bulk.copy_rows, the Python path's insert on PostgreSQL: rows of months new to the store
go to their month partitions when those are attached while the transaction is inserting."""

from __future__ import annotations

from collections.abc import Iterator

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
