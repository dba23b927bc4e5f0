"""A bulk load into an empty store builds its indexes after the rows (``cdrs.bulk_load``): the
store must end up with the same rows and the same indexes as a row-by-row load, and a failed
load must leave the empty store as it was."""

from __future__ import annotations

import pytest

from cdrgate.cdr import CSV_HEADER
from cdrgate.errors import ImportFailed
from cdrgate.ingest import seeding
from cdrgate.ingest.seeding import seed_database
from cdrgate.seed import SeedPlan
from cdrgate.storage import cdrs, schema
from cdrgate.storage.db import Database
from tests.conftest import make_cdr
from tests.services.test_importing import import_yeastar_csv


@pytest.fixture
def sqlite_db(make_db, tmp_path) -> Database:
    database = make_db(f"sqlite:///{tmp_path / 'bulk.db'}")
    schema.upgrade(database)
    return database


def _indexes(db: Database) -> list[tuple[str, str | None]]:
    with db.read() as conn:
        rows = conn.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'cdr' "
            "ORDER BY name"
        )
        return [(row[0], row[1]) for row in rows]


def _stored(db: Database) -> list[tuple[str, str, str]]:
    with db.read() as conn:
        rows = conn.exec_driver_sql("SELECT sn, callid, line FROM cdr ORDER BY sn, callid")
        return [(row[0], row[1], row[2]) for row in rows]


def test_an_import_into_an_empty_store_keeps_every_index_and_skips_duplicates(sqlite_db, tmp_path):
    before = _indexes(sqlite_db)
    assert len(before) >= 5  # the uniqueness key and the secondary indexes
    path = tmp_path / "a.csv"
    one, two = make_cdr(callid="1"), make_cdr(callid="2", callfrom="1001")
    path.write_text(CSV_HEADER + one.csv_line() + two.csv_line() + one.csv_line())
    result = import_yeastar_csv(sqlite_db, path)
    assert (result.rows, result.inserted) == (3, 2)
    assert _indexes(sqlite_db) == before
    with sqlite_db.read() as conn:
        lines = cdrs.read_lines(conn, cdrs.CdrQuery(0, 2**40, ("1001",)))
    assert lines == [two.csv_line()]


def test_a_failed_import_into_an_empty_store_leaves_it_empty_with_its_indexes(sqlite_db, tmp_path):
    before = _indexes(sqlite_db)
    path = tmp_path / "broken.csv"
    bad = make_cdr(callid="bad", timestart="2026-02-30 00:00:00")
    path.write_text(CSV_HEADER + make_cdr(callid="ok").csv_line() + bad.csv_line())
    with pytest.raises(ImportFailed):
        import_yeastar_csv(sqlite_db, path)
    assert _indexes(sqlite_db) == before
    assert _stored(sqlite_db) == []


def test_seeding_an_empty_store_stores_the_rows_of_seeding_in_commits(
    sqlite_db, make_db, tmp_path, monkeypatch
):
    plan = SeedPlan(count=900, seed=5)
    before = _indexes(sqlite_db)
    assert seed_database(sqlite_db, plan) == 900  # empty: one go, indexes after
    assert _indexes(sqlite_db) == before

    # The other path: a store that already holds a row, committed every 200 rows.
    monkeypatch.setattr(seeding, "SEED_BATCH", 100)
    monkeypatch.setattr(seeding, "SEED_COMMIT_ROWS", 200)
    other = make_db(f"sqlite:///{tmp_path / 'other.db'}")
    schema.upgrade(other)
    extra = make_cdr(sn="elsewhere")
    with other.write() as conn:
        cdrs.insert_records(other, conn, [extra])
    assert seed_database(other, plan) == 900
    assert _stored(other) == sorted(
        [*_stored(sqlite_db), ("elsewhere", extra.callid, extra.csv_line())]
    )
