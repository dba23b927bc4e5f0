"""A parallel load's writer in apsw's SQLite (ingest/apsw_writer.py): it runs only when this
process has no store connection in use, leaves a store the system's SQLite reads and writes,
hands any doubt to the Python path with nothing stored, and writes the store's file to disk in
a thread of its own before the commit. What it stores is
tests/ingest/test_parallel.py's, run under both writers."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cdrgate.cdr import CSV_HEADER, CdrRecord
from cdrgate.ingest import apsw_writer, files, parallel, part, yeastar_sql
from cdrgate.ingest.files import ImportResult, import_file
from cdrgate.ingest.formats import Format
from cdrgate.ingest.profile import SourceProfile
from cdrgate.storage import cdrs
from cdrgate.storage.cdrs import insert_records
from cdrgate.storage.db import Database
from tests.conftest import make_cdr

pytestmark = pytest.mark.skipif(not part.APSW, reason="apsw is not installed")


@pytest.fixture
def store(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """An empty store; small files go through the parallel path, a few rows per chunk."""
    monkeypatch.setattr(yeastar_sql, "CHUNK_BYTES", 300)
    monkeypatch.setattr(parallel, "MIN_BYTES", 0)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    shutil.copyfile(template, tmp_path / "store.db")
    database = Database(f"sqlite:///{tmp_path / 'store.db'}")
    yield database
    database.dispose()
    assert multiprocessing.active_children() == []
    assert list((tmp_path / "tmp").iterdir()) == []  # no scratch file left


@pytest.fixture
def writers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """One entry per parallel load, naming the SQLite its writer ran in."""
    calls: list[str] = []
    for module, name in ((parallel, "stdlib"), (apsw_writer, "apsw")):
        real = module.load

        def counted(*args: Any, real: Any = real, name: str = name) -> Any:
            calls.append(name)
            return real(*args)

        monkeypatch.setattr(module, "load", counted)
    return calls


@pytest.fixture
def python_path(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry each time the Python path reads a file."""
    calls: list[int] = []
    real = files._rows

    def rows(*args: Any) -> Any:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(files, "_rows", rows)
    return calls


def _records(count: int, prefix: str = "") -> list[CdrRecord]:
    return [
        make_cdr(callid=f"{prefix}{n}", timestart=f"2026-03-01 {n % 24:02d}:{n % 60:02d}:00")
        for n in range(count)
    ]


def _import(db: Database, tmp_path: Path, records: list[CdrRecord]) -> ImportResult:
    source = tmp_path / "calls.csv"
    source.write_text(CSV_HEADER + "".join(r.csv_line() for r in records))
    with open(source, "rb") as stream:
        return import_file(db, "calls.csv", stream, Format.yeastar, SourceProfile("yeastar"), print)


def _stored(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT id, sn, callid FROM cdr ORDER BY id").fetchall()


def test_a_store_loaded_in_apsw_is_read_and_written_by_the_system_sqlite(store, tmp_path, writers):
    result = _import(store, tmp_path, _records(60))
    assert (writers, result.inserted) == (["apsw"], 60)
    path = tmp_path / "store.db"
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        indexes = conn.execute("SELECT count(*) FROM sqlite_master WHERE tbl_name = 'cdr'")
        assert indexes.fetchone()[0] == 6  # the table, its key and the four secondary indexes
    with store.write() as conn:  # the pool, in the system's SQLite, after the load
        assert insert_records(store, conn, _records(3, "later")) == 3
    assert len(_stored(path)) == 63


def test_a_store_connection_in_use_keeps_the_writer_in_the_pools_sqlite(store, tmp_path, writers):
    with store.connect():  # e.g. a caller holding a read: apsw must not open the file now
        result = _import(store, tmp_path, _records(60))
    assert (writers, result.inserted) == (["stdlib"], 60)


def test_rows_stored_before_the_write_lock_send_the_file_to_the_python_path(
    store, tmp_path, writers, python_path, monkeypatch
):
    with store.write() as conn:
        insert_records(store, conn, _records(10))
    # Another process stores rows between the import's look at the store and its write lock.
    monkeypatch.setattr(cdrs, "store_is_empty", lambda db: True)
    result = _import(store, tmp_path, _records(60))
    assert (writers, python_path) == (["apsw"], [1])
    assert (result.rows, result.inserted) == (60, 50)
    assert [row[2] for row in _stored(tmp_path / "store.db")] == [
        *map(str, range(10)),
        *map(str, range(10, 60)),
    ]
    with sqlite3.connect(tmp_path / "store.db") as conn:
        assert conn.execute("SELECT sum(calls) FROM cdr_summary").fetchone() == (60,)


def test_an_sqlite_error_in_apsw_rolls_back_and_the_python_path_stores_the_file(
    store, tmp_path, writers, python_path, monkeypatch
):
    # A statement SQLite refuses, after every row is in (before the index builds).
    monkeypatch.setattr(apsw_writer, "SORTER_SETTINGS", ("no such setting at all",))
    result = _import(store, tmp_path, _records(60))
    assert (writers, python_path, result.inserted) == (["apsw"], [1], 60)
    assert len(_stored(tmp_path / "store.db")) == 60
    with sqlite3.connect(tmp_path / "store.db") as conn:
        assert conn.execute("SELECT sum(calls) FROM cdr_summary").fetchone() == (60,)


def test_the_store_file_is_flushed_to_disk_by_a_thread_of_the_load(
    store, tmp_path, writers, monkeypatch
):
    flushed: list[tuple[str, str]] = []
    real = os.fsync

    def fsync(descriptor: int) -> None:
        flushed.append(
            (os.readlink(f"/proc/self/fd/{descriptor}"), threading.current_thread().name)
        )
        real(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    result = _import(store, tmp_path, _records(60))
    assert (writers, result.inserted) == (["apsw"], 60)
    assert flushed  # after the writer's part and before each index build, when none runs
    assert set(flushed) == {(str((tmp_path / "store.db").resolve()), "cdrgate-flush")}
    with sqlite3.connect(tmp_path / "store.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_a_failed_early_flush_is_left_to_the_commits_own(
    store, tmp_path, writers, python_path, monkeypatch, capfd
):
    def fsync(descriptor: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    result = _import(store, tmp_path, _records(60))
    assert (writers, python_path, result.inserted) == (["apsw"], [], 60)
    assert len(_stored(tmp_path / "store.db")) == 60
    assert "Traceback" not in capfd.readouterr().err
