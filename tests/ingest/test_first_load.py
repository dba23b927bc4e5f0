"""The first file of `cdrgate import` into an empty SQLite store, loaded before the store is
opened through SQLAlchemy (ingest/first_load.py): the same rows, counts and messages as the
usual path, the store left as the usual path leaves it however the load ends, and every
other store (rows, no schema yet, another URL form) left to the usual path untouched."""

from __future__ import annotations

import multiprocessing
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cdrgate.cdr import CSV_HEADER, CdrRecord
from cdrgate.cli import app
from cdrgate.cli.exits import EXIT_FAILED, EXIT_INTERRUPTED
from cdrgate.ingest import apsw_writer, files, first_load, parallel, part, yeastar_sql
from cdrgate.services import stores
from cdrgate.storage import sqlite_head
from tests.conftest import make_cdr

pytestmark = pytest.mark.skipif(not part.APSW, reason="apsw is not installed")


@pytest.fixture
def store(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty current store; small files are large enough, a few rows per chunk."""
    monkeypatch.setattr(yeastar_sql, "CHUNK_BYTES", 300)
    monkeypatch.setattr(parallel, "MIN_BYTES", 1)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    path = tmp_path / "store.db"
    shutil.copyfile(template, path)
    yield path
    assert multiprocessing.active_children() == []
    assert list((tmp_path / "tmp").iterdir()) == []  # no scratch file left


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URLs the command opened the store at through SQLAlchemy."""
    calls: list[str] = []
    real = stores.open_or_create

    def open_or_create(url: str) -> stores.Opened:
        calls.append(url)
        return real(url)

    monkeypatch.setattr(stores, "open_or_create", open_or_create)
    return calls


@pytest.fixture
def apsw_loads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = apsw_writer.load

    def load(*args: Any) -> Any:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(apsw_writer, "load", load)
    return calls


def _records(count: int, prefix: str = "") -> list[CdrRecord]:
    return [
        make_cdr(
            callid=f"{prefix}{n}",
            timestart=f"2026-03-0{1 + n % 3} {n % 24:02d}:{n % 60:02d}:00",
            status=("ANSWERED", "NO ANSWER", "BUSY")[n % 3],
            talkduraction=n % 50,
        )
        for n in range(count)
    ]


def _csv(tmp_path: Path, records: list[CdrRecord], name: str = "calls.csv") -> Path:
    path = tmp_path / name
    path.write_text(CSV_HEADER + "".join(r.csv_line() for r in records))
    return path


def _import(*argv: str) -> Any:
    return CliRunner().invoke(app, ["import", *argv])


def _state(path: Path) -> tuple[Any, ...]:
    with sqlite3.connect(path) as conn:
        return (
            conn.execute("PRAGMA journal_mode").fetchone()[0],
            conn.execute("PRAGMA integrity_check").fetchall(),
            conn.execute("SELECT sn, callid, ts, line FROM cdr ORDER BY id").fetchall(),
            conn.execute("SELECT * FROM cdr_summary ORDER BY 1, 2, 3").fetchall(),
            conn.execute("SELECT count(*) FROM sqlite_master WHERE tbl_name = 'cdr'").fetchone(),
        )


def test_a_first_file_into_an_empty_store_is_stored_without_opening_the_pool(
    store, tmp_path, opened, apsw_loads, template, monkeypatch
):
    source = _csv(tmp_path, _records(60))
    result = _import(str(source), "--database", f"sqlite:///{store}")
    assert result.exit_code == 0, result.output
    assert f"{source}: 60 rows, 60 new, 0 already present" in result.output
    assert "by type and status:" in result.output
    assert (opened, apsw_loads) == ([], [1])
    # What the usual path stores, counts and leaves (the pool opens the store first there).
    usual = tmp_path / "usual.db"
    shutil.copyfile(template, usual)
    monkeypatch.setattr(first_load, "store_file", lambda url, paths: None)
    assert _import(str(source), "--database", f"sqlite:///{usual}").exit_code == 0
    assert _state(store) == _state(usual)
    assert _state(store)[:2] == ("wal", [("ok",)])


def test_the_files_after_the_first_go_through_the_pool(store, tmp_path, opened, apsw_loads):
    first, second = _csv(tmp_path, _records(40)), _csv(tmp_path, _records(50), "more.csv")
    result = _import(str(first), str(second), "--json", "--database", f"sqlite:///{store}")
    assert result.exit_code == 0, result.output
    assert '"inserted": 40' in result.output and '"inserted": 10' in result.output
    assert (len(opened), apsw_loads) == (1, [1])
    assert len(_state(store)[2]) == 50


def test_a_store_with_rows_is_left_to_the_usual_path(store, tmp_path, opened, apsw_loads):
    source = _csv(tmp_path, _records(30))
    assert _import(str(source), "--database", f"sqlite:///{store}").exit_code == 0
    opened.clear()
    result = _import(
        str(_csv(tmp_path, _records(45), "more.csv")), "--database", f"sqlite:///{store}"
    )
    assert result.exit_code == 0, result.output
    assert "45 rows, 15 new, 30 already present" in result.output
    assert (len(opened), apsw_loads) == (1, [1])  # the second file: the pool's one-core path


def test_a_new_store_is_made_from_the_snapshot_and_loaded_without_opening_the_pool(
    store, tmp_path, opened, apsw_loads, monkeypatch
):
    source = _csv(tmp_path, _records(60))
    new = tmp_path / "new.db"
    result = _import(str(source), "--database", f"sqlite:///{new}")
    assert result.exit_code == 0, result.output
    assert f"created a new database at {new}" in result.output
    assert f"{source}: 60 rows, 60 new, 0 already present" in result.output
    assert (opened, apsw_loads) == ([], [1])
    # What the usual path makes of a new store (migrations and all) and stores in it.
    usual = tmp_path / "usual.db"
    monkeypatch.setattr(first_load, "store_file", lambda url, paths: None)
    result = _import(str(source), "--database", f"sqlite:///{usual}")
    assert result.exit_code == 0 and f"created a new database at {usual}" in result.output
    assert _state(new) == _state(usual)
    with sqlite3.connect(new) as conn, sqlite3.connect(usual) as other:
        schema = "SELECT type, name, sql FROM sqlite_master ORDER BY 1, 2"
        assert conn.execute(schema).fetchall() == other.execute(schema).fetchall()
        assert conn.execute("PRAGMA page_size").fetchone() == (sqlite_head.NEW_STORE_PAGE_SIZE,)


def test_a_file_with_no_schema_yet_is_created_by_the_usual_path(store, tmp_path, opened):
    empty = tmp_path / "new.db"
    empty.touch()
    result = _import(str(_csv(tmp_path, _records(20))), "--database", f"sqlite:///{empty}")
    assert result.exit_code == 0, result.output
    assert "20 rows, 20 new" in result.output
    assert len(opened) == 1


def test_a_refused_row_is_named_by_the_python_path_and_nothing_is_stored(
    store, tmp_path, apsw_loads, monkeypatch
):
    python_reads: list[int] = []
    real_rows = files._rows

    def rows(*args: Any) -> Any:
        python_reads.append(1)
        return real_rows(*args)

    monkeypatch.setattr(files, "_rows", rows)
    records = _records(60)
    records[47] = records[47]._replace(timestart="2026-13-45 00:00:00")
    result = _import(str(_csv(tmp_path, records)), "--database", f"sqlite:///{store}")
    assert result.exit_code == EXIT_FAILED
    assert "calls.csv:49: not a real date" in result.output  # the header is line 1
    assert (apsw_loads, python_reads) == ([1], [1])  # apsw once, then the Python path
    assert _state(store)[:3] == ("wal", [("ok",)], [])


def test_ctrl_c_during_the_load_leaves_the_store_empty_and_in_wal_mode(
    store, tmp_path, monkeypatch
):
    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(parallel.Helper, "loaded", interrupted)
    result = _import(str(_csv(tmp_path, _records(60))), "--database", f"sqlite:///{store}")
    assert result.exit_code == EXIT_INTERRUPTED
    assert "stopped: Ctrl-C" in result.output
    assert _state(store)[:3] == ("wal", [("ok",)], [])


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///{store}?timeout=5",
        "sqlite:///file:{store}",
        "sqlite:///:memory:",
        "sqlite:///{store}%",
        "sqlite:///{missing}/store.db",  # no folder to make it in
        "sqlite:///{folder}",  # a folder
        "postgresql://u@h/db",
        "sqlite://",
    ],
)
def test_only_a_plain_url_of_an_existing_or_new_file_is_read_here(store, tmp_path, url):
    source = _csv(tmp_path, _records(3))
    shown = url.format(store=store, missing=tmp_path / "missing", folder=tmp_path)
    assert first_load.store_file(shown, [source]) is None


def test_a_plain_url_names_the_file_sqlalchemy_reads(store, tmp_path, monkeypatch):
    source = _csv(tmp_path, _records(3))
    monkeypatch.chdir(tmp_path)
    for url in (f"sqlite:///{store}", "sqlite:///store.db", "sqlite:///./store.db"):
        expected = stores.sqlite_file(url)
        assert expected is not None
        assert first_load.store_file(url, [source]) == str(expected.absolute())
