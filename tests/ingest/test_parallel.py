"""A large Yeastar file into an empty SQLite store on two cores (ingest/parallel.py) stores
exactly what the one-core path stores, refuses what it refuses with the same report, and
leaves no process and no scratch file behind, however it ends."""

from __future__ import annotations

import multiprocessing
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cdrgate.cdr import CSV_HEADER, CdrRecord
from cdrgate.cli import app
from cdrgate.errors import ImportFailed
from cdrgate.ingest import apsw_writer, parallel, part, yeastar_sql
from cdrgate.ingest.files import ImportResult, import_file
from cdrgate.ingest.formats import Format
from cdrgate.ingest.profile import SourceProfile
from cdrgate.storage import summary as storage_summary
from cdrgate.storage.cdrs import COLUMNS
from cdrgate.storage.db import Database
from tests.conftest import make_cdr

Outcome = tuple[Any, ...]


@pytest.fixture
def scratch_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the load's temporary directories go, so a test sees every one it leaves."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


@pytest.fixture(params=["apsw", "stdlib"], ids=["writer in apsw", "writer in the stdlib"])
def writer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which SQLite the writer's side of a parallel load runs in: apsw's (ingest/apsw_writer.py,
    when apsw is installed), or the store's pool's, as without apsw (parallel.load; the child
    is a new interpreter: it keeps apsw either way)."""
    if request.param == "stdlib":
        monkeypatch.setattr(part, "APSW", False)
    return str(request.param)


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch, writer: str) -> list[str]:
    """Small files go through the parallel path, a few rows per chunk; the list gets one
    entry per parallel load, naming its writer's SQLite."""
    monkeypatch.setattr(yeastar_sql, "CHUNK_BYTES", 300)
    calls: list[str] = []
    for module, name in ((parallel, "stdlib"), (apsw_writer, "apsw")):
        monkeypatch.setattr(module, "load", _counting(module.load, name, calls))
    return calls


def _counting(real: Callable[..., Any], name: str, calls: list[str]) -> Callable[..., Any]:
    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return real(*args, **kwargs)

    return counted


def _import(template: Path, tmp_path: Path, data: bytes, min_bytes: int) -> Outcome:
    """Result (or error), stored rows with their ids, cdr_summary: of ``data`` imported into a
    fresh copy of the empty store, parallel for files of ``min_bytes`` and more."""
    store = tmp_path / f"store-{min_bytes}.db"
    shutil.copyfile(template, store)
    source = tmp_path / "calls.csv"
    source.write_bytes(data)
    database = Database(f"sqlite:///{store}")
    patch = pytest.MonkeyPatch()
    patch.setattr(parallel, "MIN_BYTES", min_bytes)
    try:
        with open(source, "rb") as stream:
            result: ImportResult | str = import_file(
                database, "calls.csv", stream, Format.yeastar, SourceProfile("yeastar"), print
            )
    except ImportFailed as exc:
        result = str(exc)
    finally:
        patch.undo()
        database.dispose()
    with sqlite3.connect(store) as conn:
        stored = conn.execute(f"SELECT id, {', '.join(COLUMNS)} FROM cdr ORDER BY id").fetchall()
        summary = conn.execute("SELECT * FROM cdr_summary ORDER BY 1, 2, 3").fetchall()
        indexes = conn.execute(
            "SELECT name FROM sqlite_master WHERE tbl_name = 'cdr' ORDER BY name"
        ).fetchall()
    return result, stored, summary, indexes


def _both(template: Path, tmp_path: Path, data: bytes) -> tuple[Outcome, Outcome]:
    return _import(template, tmp_path, data, 0), _import(template, tmp_path, data, 1 << 40)


def _rows(count: int, prefix: str = "", **overrides: Any) -> list[CdrRecord]:
    return [
        make_cdr(
            callid=f"{prefix}{n}",
            timestart=f"2026-03-0{1 + n % 3} {n % 24:02d}:{n % 60:02d}:00",
            status=("ANSWERED", "NO ANSWER", "BUSY")[n % 3],
            talkduraction=n % 50,
            **overrides,
        )
        for n in range(count)
    ]


def _file(*records: CdrRecord, header: bool = True) -> bytes:
    return ((CSV_HEADER if header else "") + "".join(r.csv_line() for r in records)).encode()


def test_a_file_with_a_header_stores_the_same_rows_ids_and_summary_on_two_cores(
    template, tmp_path, loads, writer
):
    parallel_run, sequential = _both(template, tmp_path, _file(*_rows(60)))
    assert loads == [writer]
    assert parallel_run == sequential
    result, stored, summary, _ = parallel_run
    assert (result.rows, result.inserted, len(stored)) == (60, 60, 60)
    assert sum(row[3] for row in summary) == 60


def test_duplicates_across_the_cut_and_within_the_childs_part_are_skipped_in_file_order(
    template, tmp_path, loads, writer
):
    first = _rows(30)
    # The child's part repeats rows of the writer's, and one of its own, with other fields:
    # the first in the file is the one kept.
    again = [r._replace(callfrom="9999") for r in first[:10]]
    data = _file(*first, *_rows(20, "b"), *again, *_rows(5, "b", callto="7777"))
    parallel_run, sequential = _both(template, tmp_path, data)
    assert loads == [writer]
    assert parallel_run == sequential
    result, stored, _, _ = parallel_run
    assert (result.rows, result.inserted) == (65, 50)
    assert all(row[4] != "9999" and row[5] != "7777" for row in stored)


@pytest.fixture
def writer_upserts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of each tally the writer upserts into cdr_summary itself."""
    sizes: list[int] = []
    real = storage_summary.add_tally

    def add_tally(conn: Any, tally: storage_summary.Tally) -> None:
        sizes.append(len(tally))
        real(conn, tally)

    monkeypatch.setattr(storage_summary, "add_tally", add_tally)
    return sizes


def test_the_writers_counts_reach_cdr_summary_through_the_childs_when_every_row_is_new(
    template, tmp_path, loads, writer_upserts, writer
):
    parallel_run = _import(template, tmp_path, _file(*_rows(60)), 0)
    assert loads == [writer]
    assert not any(writer_upserts)  # nothing left for the writer's own upsert
    writer_upserts.clear()
    sequential = _import(template, tmp_path, _file(*_rows(60)), 1 << 40)
    assert any(writer_upserts)
    assert parallel_run == sequential


@pytest.mark.parametrize("writer", ["stdlib"], indirect=True)
def test_the_writer_counts_its_own_rows_when_the_copy_skips_a_duplicate(
    template, tmp_path, loads, writer_upserts, writer
):
    first = _rows(30)
    data = _file(*first, *_rows(20, "b"), first[0]._replace(callfrom="9999"))
    parallel_run = _import(template, tmp_path, data, 0)
    assert loads == [writer]
    assert any(writer_upserts)  # the child's counts were not used: the writer adds its tally
    assert parallel_run == _import(template, tmp_path, data, 1 << 40)
    assert parallel_run[0].inserted == 50


@pytest.mark.parametrize(
    "data",
    [
        # The copy skips a row: the child's counts (with the writer's) cannot be used.
        _file(*_rows(30), *_rows(20, "b"), _rows(1)[0]._replace(callfrom="9999")),
        # A duplicate within the writer's part: its tally cannot be used.
        _file(*_rows(5), *_rows(5), *_rows(40, "b")),
        # Calls before 1970: a tally's clock hours are not SQL's.
        _file(*(r._replace(timestart="1969-12-31 23:59:59") for r in _rows(60))),
    ],
    ids=["duplicate in the copy", "duplicate in the writers part", "before 1970"],
)
@pytest.mark.parametrize("writer", ["apsw"], indirect=True)
def test_the_apsw_writer_counts_every_row_by_sql_when_a_tally_is_not_exact(
    template, tmp_path, loads, writer_upserts, writer, data
):
    parallel_run = _import(template, tmp_path, data, 0)
    assert loads == [writer]
    assert writer_upserts == []  # no tally upserted: counted by SQL
    assert parallel_run == _import(template, tmp_path, data, 1 << 40)


@pytest.mark.parametrize("at", [33, 3], ids=["in the child's part", "in the writer's part"])
def test_a_quoted_chunk_is_read_by_the_csv_module_in_order(template, tmp_path, loads, writer, at):
    records = _rows(40)
    records[at] = records[at]._replace(callfrom="a,b", didnumber='say "hi"\nthere')
    parallel_run, sequential = _both(template, tmp_path, _file(*records))
    assert loads == [writer]
    assert parallel_run == sequential
    stored = parallel_run[1]
    assert [row[2] for row in stored] == [str(n) for n in range(40)]


def test_a_crlf_file_without_a_header_stores_the_same(template, tmp_path, loads, writer):
    data = _file(*_rows(50), header=False).replace(b"\n", b"\r\n")
    parallel_run, sequential = _both(template, tmp_path, data)
    assert loads == [writer]
    assert parallel_run == sequential
    assert parallel_run[0].inserted == 50


def _with_bad_row(at: int) -> bytes:
    records = _rows(50)
    lines = [CSV_HEADER, *(r.csv_line() for r in records)]
    lines[at] = lines[at].replace("2026-03-0", "2026-02-3", 1)  # 2026-02-31...: no such day
    return "".join(lines).encode()


@pytest.mark.parametrize("line", [5, 45], ids=["in the writer's part", "in the child's part"])
def test_a_bad_row_in_either_part_is_reported_as_the_python_path_reports_it(
    template, tmp_path, loads, scratch_root, line, writer
):
    parallel_run, sequential = _both(template, tmp_path, _with_bad_row(line))
    assert loads == [writer]
    assert parallel_run == sequential
    result, stored, summary, _ = parallel_run
    assert isinstance(result, str) and f"calls.csv:{line + 1}: not a real date" in result
    assert stored == summary == []
    assert multiprocessing.active_children() == []
    assert list(scratch_root.iterdir()) == []


def test_a_file_too_small_for_a_second_process_takes_the_one_core_path(template, tmp_path, loads):
    outcome = _import(template, tmp_path, _file(*_rows(20)), parallel.MIN_BYTES)
    assert loads == []
    assert outcome[0].inserted == 20


def _interrupting(monkeypatch: pytest.MonkeyPatch, action: Callable[[], None]) -> None:
    """``action`` runs in the writer once its part is read (the child busy with its own)."""
    real = yeastar_sql.load

    def load(*args: Any, **kwargs: Any) -> yeastar_sql.Kinds:
        kinds = real(*args, **kwargs)
        if kwargs.get("end") is not None:
            action()
        return kinds

    monkeypatch.setattr(yeastar_sql, "load", load)


def test_ctrl_c_during_the_load_leaves_no_process_no_scratch_file_and_nothing_stored(
    template, tmp_path, loads, scratch_root, monkeypatch
):
    def interrupt() -> None:
        raise KeyboardInterrupt

    _interrupting(monkeypatch, interrupt)
    with pytest.raises(KeyboardInterrupt):
        _import(template, tmp_path, _file(*_rows(60)), 0)
    assert multiprocessing.active_children() == []
    assert list(scratch_root.iterdir()) == []
    with sqlite3.connect(tmp_path / "store-0.db") as conn:
        assert conn.execute("SELECT count(*) FROM cdr").fetchone() == (0,)


def test_a_child_killed_during_the_load_leaves_nothing_behind_and_the_file_stored_whole(
    template, tmp_path, loads, scratch_root, monkeypatch, writer
):
    def kill_child() -> None:
        for child in multiprocessing.active_children():
            child.kill()
            child.join()

    data = _file(*_rows(60))
    sequential = _import(template, tmp_path, data, 1 << 40)
    _interrupting(monkeypatch, kill_child)
    assert _import(template, tmp_path, data, 0) == sequential
    assert loads == [writer]
    assert multiprocessing.active_children() == []
    assert list(scratch_root.iterdir()) == []


def test_a_child_killed_once_its_rows_are_in_leaves_nothing_behind_and_the_file_stored_whole(
    template, tmp_path, loads, scratch_root, monkeypatch, writer
):
    real = parallel.Helper.loaded

    def loaded_then_killed(self: parallel.Helper) -> int:
        rows = real(self)
        for child in multiprocessing.active_children():
            child.kill()
            child.join()
        return rows

    data = _file(*_rows(60))
    sequential = _import(template, tmp_path, data, 1 << 40)
    monkeypatch.setattr(parallel.Helper, "loaded", loaded_then_killed)
    assert _import(template, tmp_path, data, 0) == sequential
    assert loads == [writer]
    assert multiprocessing.active_children() == []
    assert list(scratch_root.iterdir()) == []


def test_the_import_command_starts_the_child_before_reading_and_leaves_none(
    template, tmp_path, loads, scratch_root, monkeypatch, writer
):
    started: list[int] = []
    real_init = parallel.Helper.__init__

    def init(self: parallel.Helper) -> None:
        started.append(1)
        real_init(self)

    monkeypatch.setattr(parallel.Helper, "__init__", init)
    monkeypatch.setattr(parallel, "MIN_BYTES", 1)
    store = tmp_path / "store.db"
    shutil.copyfile(template, store)
    source = tmp_path / "calls.csv"
    source.write_bytes(_file(*_rows(60)))
    result = CliRunner().invoke(app, ["import", str(source), "--database", f"sqlite:///{store}"])
    assert result.exit_code == 0, result.output
    assert "60 rows, 60 new" in result.output
    assert (started, loads) == ([1], [writer])  # the child started early is the one used
    assert list(scratch_root.iterdir()) == []


@pytest.fixture(autouse=True)
def _no_children_left() -> Iterator[None]:
    yield
    assert multiprocessing.active_children() == []
