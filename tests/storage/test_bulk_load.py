"""A bulk load into an empty store builds its indexes after the rows (``cdrs.bulk_load``), and
when nobody else has the store open, goes through a rollback journal (``journal``): the store
must end up with the same rows and the same indexes as a row-by-row load, in WAL mode, and a
failed load must leave the empty store as it was."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import event

from cdrgate.cdr import CSV_HEADER
from cdrgate.errors import ImportFailed
from cdrgate.ingest import seeding
from cdrgate.ingest.files import import_file
from cdrgate.ingest.formats import Format
from cdrgate.ingest.profile import SourceProfile
from cdrgate.ingest.seeding import seed_database
from cdrgate.seed import SeedPlan, generate
from cdrgate.storage import cdrs, schema, seeded_pipeline, summary_sql
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


def _sorter_pragmas(conn) -> tuple[int, ...]:
    names = ("threads", "cache_size", "temp_store")
    return tuple(conn.exec_driver_sql(f"PRAGMA {name}").scalar_one() for name in names)


def test_a_bulk_load_builds_its_indexes_on_sorter_threads_and_restores_the_connection(
    sqlite_db, make_db, tmp_path
):
    # A fresh pool, as a command has: the migrations' connections hold temporary tables.
    sqlite_db = make_db(f"sqlite:///{tmp_path / 'bulk.db'}")
    seen: list[tuple[int, ...]] = []
    with sqlite_db.write() as conn:
        before = _sorter_pragmas(conn)
        with cdrs.bulk_load(conn) as whole:
            assert whole
            cdrs.insert_records(sqlite_db, conn, [make_cdr(callid=str(n)) for n in range(50)])

            def watch(_conn, _cursor, statement, *_args) -> None:
                if statement.startswith("CREATE INDEX"):
                    seen.append(_sorter_pragmas(_conn))

            event.listen(conn, "before_cursor_execute", watch)
        event.remove(conn, "before_cursor_execute", watch)
        after = _sorter_pragmas(conn)
    # Worker threads, a small cache and temporary files (1): what lets the sorter use them.
    assert seen and all(
        threads >= 1 and cache == -2000 and temp == 1 for threads, cache, temp in seen
    )
    assert after == before
    assert len(_stored(sqlite_db)) == 50


def test_a_bulk_load_keeps_the_temporary_tables_of_its_caller(sqlite_db):
    before = _indexes(sqlite_db)
    with sqlite_db.write() as conn:
        conn.exec_driver_sql("CREATE TEMP TABLE mine (n INTEGER)")
        conn.exec_driver_sql("INSERT INTO mine VALUES (7)")
        with cdrs.bulk_load(conn):
            cdrs.insert_records(sqlite_db, conn, [make_cdr(callid=str(n)) for n in range(20)])
        assert conn.exec_driver_sql("SELECT n FROM mine").scalar_one() == 7
        conn.exec_driver_sql("DROP TABLE mine")
    assert _indexes(sqlite_db) == before
    assert len(_stored(sqlite_db)) == 20


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


def _attached(db: Database) -> list[str]:
    with db.read() as conn:
        return [row[1] for row in conn.exec_driver_sql("PRAGMA database_list")]


@pytest.mark.parametrize(
    "makers",
    [seeded_pipeline.MAKERS, ("sqlite3",)],
    ids=["makers in both SQLite libraries", "one maker (no apsw)"],
)
def test_an_empty_store_seeded_in_chunks_from_makers_holds_the_plans_rows_in_order(
    sqlite_db, tmp_path, monkeypatch, makers
):
    monkeypatch.setattr(seeded_pipeline, "MAKERS", makers)
    monkeypatch.setattr(seeding, "SEED_BATCH", 100)  # 2,000 rows: eight chunks of ~250
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    made: list[int] = []
    on_disk: list[int] = []

    def progress(rows: int) -> None:
        made.append(rows)
        on_disk.append(len(list((tmp_path / "scratch").rglob("*.db"))))

    plan = SeedPlan(count=2000, seed=6, days=40)
    before = _indexes(sqlite_db)
    assert seed_database(sqlite_db, plan, progress) == 2000
    assert len(made) == seeded_pipeline.MOST_CHUNKS and sum(made) == 2000
    # Each maker keeps at most one chunk ahead of the writer.
    assert max(on_disk) <= len(makers) + 1
    with sqlite_db.read() as conn:
        stored = [row[0] for row in conn.exec_driver_sql("SELECT line FROM cdr ORDER BY id")]
    assert stored == [line for _, line in generate(plan)]
    assert _indexes(sqlite_db) == before
    # The chunk files are gone, and no pooled connection keeps one attached.
    assert list((tmp_path / "scratch").iterdir()) == []
    assert not [name for name in _attached(sqlite_db) if name not in ("main", "temp")]
    assert seed_database(sqlite_db, plan) == 0  # again, on the same pool: nothing new


def test_a_maker_that_fails_leaves_the_empty_store_as_it_was(sqlite_db, monkeypatch):
    monkeypatch.setattr(seeding, "SEED_BATCH", 100)
    calls = 0
    real = summary_sql.count_into_sql

    def fail_on_the_third_chunk(source, target):
        nonlocal calls
        calls += 1  # from either maker's thread: the third chunk counted fails
        if calls == 3:
            raise RuntimeError("maker failed")
        return real(source, target)

    monkeypatch.setattr(seeded_pipeline, "count_into_sql", fail_on_the_third_chunk)
    before = _indexes(sqlite_db)
    with pytest.raises(RuntimeError, match="maker failed"):
        seed_database(sqlite_db, SeedPlan(count=2000, seed=6))
    assert _stored(sqlite_db) == []
    assert _indexes(sqlite_db) == before
    assert _journal_mode(sqlite_db) == "wal"
    monkeypatch.undo()
    assert seed_database(sqlite_db, SeedPlan(count=300, seed=6)) == 300


def _journal_mode(db: Database) -> str:
    with db.connect() as conn:
        raw = conn.connection.driver_connection
        assert isinstance(raw, sqlite3.Connection)  # outside a transaction, as SQLite wants
        return str(raw.execute("PRAGMA journal_mode").fetchone()[0])


def _sidecars(path: Path) -> set[str]:
    """Which of the store's journal files exist now."""
    return {suffix for suffix in ("-journal", "-wal") if Path(f"{path}{suffix}").exists()}


def test_an_empty_store_seeded_alone_is_written_through_a_rollback_journal_and_left_in_wal_mode(
    sqlite_db, tmp_path, monkeypatch
):
    # A rollback journal writes the new pages once, into the store; WAL would write them twice.
    monkeypatch.setattr(seeding, "SEED_BATCH", 100)
    path = tmp_path / "bulk.db"
    during: list[set[str]] = []
    plan = SeedPlan(count=2000, seed=6, days=40)
    assert seed_database(sqlite_db, plan, lambda _rows: during.append(_sidecars(path))) == 2000
    assert during and all(files == {"-journal"} for files in during)
    assert _journal_mode(sqlite_db) == "wal"
    assert not Path(f"{path}-journal").exists()
    assert len(_stored(sqlite_db)) == 2000


def test_a_store_another_connection_has_open_is_seeded_in_wal_mode(sqlite_db, tmp_path):
    path = tmp_path / "bulk.db"
    other = sqlite3.connect(path)  # a reader elsewhere, idle: it keeps the WAL in use
    try:
        other.execute("SELECT count(*) FROM cdr").fetchone()
        during: list[set[str]] = []
        plan = SeedPlan(count=500, seed=7)
        assert seed_database(sqlite_db, plan, lambda _rows: during.append(_sidecars(path))) == 500
        assert during and all("-journal" not in files for files in during)
        assert other.execute("SELECT count(*) FROM cdr").fetchone()[0] == 500
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()


def _import_watching(db: Database, csv: Path, store: Path) -> tuple[int, list[set[str]]]:
    """Import ``csv``; returns the rows stored and the journal files seen at each progress."""
    during: list[set[str]] = []
    with open(csv, "rb") as stream:
        result = import_file(
            db, str(csv), stream, Format.yeastar, SourceProfile("yeastar"), report=print,
            progress=lambda _rows: during.append(_sidecars(store)),
        )  # fmt: skip
    return result.inserted, during


def test_a_first_file_imported_alone_is_written_through_a_rollback_journal_and_left_in_wal_mode(
    sqlite_db, tmp_path
):
    store, csv = tmp_path / "bulk.db", tmp_path / "first.csv"
    records = [make_cdr(callid=str(n), callfrom=str(1000 + n % 7)) for n in range(300)]
    csv.write_text(CSV_HEADER + "".join(record.csv_line() for record in records))
    inserted, during = _import_watching(sqlite_db, csv, store)
    assert inserted == 300
    assert during and all(files == {"-journal"} for files in during)
    assert _journal_mode(sqlite_db) == "wal"
    assert not Path(f"{store}-journal").exists()
    assert len(_stored(sqlite_db)) == 300

    # The store holds rows now: the next file goes through the WAL, as any write does.
    more = tmp_path / "second.csv"
    more.write_text(CSV_HEADER + make_cdr(callid="late").csv_line())
    inserted, during = _import_watching(sqlite_db, more, store)
    assert inserted == 1
    assert during and all("-journal" not in files for files in during)
    assert _journal_mode(sqlite_db) == "wal"


def test_a_refused_first_file_leaves_the_store_empty_and_in_wal_mode(sqlite_db, tmp_path):
    csv = tmp_path / "broken.csv"
    bad = make_cdr(callid="bad", timestart="2026-02-30 00:00:00")
    csv.write_text(CSV_HEADER + make_cdr(callid="ok").csv_line() + bad.csv_line())
    with pytest.raises(ImportFailed):
        import_yeastar_csv(sqlite_db, csv)
    assert _stored(sqlite_db) == []
    assert _journal_mode(sqlite_db) == "wal"
    assert not Path(f"{tmp_path / 'bulk.db'}-journal").exists()


def test_a_first_file_into_a_store_another_connection_has_open_goes_through_the_wal(
    sqlite_db, tmp_path
):
    store, csv = tmp_path / "bulk.db", tmp_path / "first.csv"
    csv.write_text(CSV_HEADER + make_cdr(callid="1").csv_line() + make_cdr(callid="2").csv_line())
    other = sqlite3.connect(store)  # a server elsewhere, idle: it keeps the WAL in use
    try:
        other.execute("SELECT count(*) FROM cdr").fetchone()
        inserted, during = _import_watching(sqlite_db, csv, store)
        assert inserted == 2
        assert during and all("-journal" not in files for files in during)
        assert other.execute("SELECT count(*) FROM cdr").fetchone()[0] == 2
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()


def test_a_bulk_load_into_a_store_with_rows_has_a_larger_cache_then_restores_it(sqlite_db):
    with sqlite_db.write() as conn:
        cdrs.insert_records(sqlite_db, conn, [make_cdr(callid="0")])
    before = _indexes(sqlite_db)
    with sqlite_db.write() as conn:
        saved = conn.exec_driver_sql("PRAGMA cache_size").scalar_one()
        with cdrs.bulk_load(conn) as whole:
            assert not whole  # the indexes stay: rows are there
            # Negative sizes are KiB: the load's cache is the larger.
            assert -conn.exec_driver_sql("PRAGMA cache_size").scalar_one() > -saved > 0
            cdrs.insert_records(sqlite_db, conn, [make_cdr(callid=str(n)) for n in range(1, 30)])
        assert conn.exec_driver_sql("PRAGMA cache_size").scalar_one() == saved
    assert _indexes(sqlite_db) == before
    assert len(_stored(sqlite_db)) == 30
