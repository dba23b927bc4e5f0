"""A parallel load's child (ingest/part.py) on apsw's SQLite, or the standard library's when
apsw cannot be imported: the same verdict on every row, the same stored values, and scratch
files the writer's SQLite reads."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from cdrgate.ingest import parallel, part, yeastar_sql
from cdrgate.ingest.profile import SourceProfile
from cdrgate.storage import schema, summary
from cdrgate.storage.cdrs import COLUMNS
from cdrgate.storage.db import Database
from tests.conftest import make_cdr
from tests.ingest.test_yeastar_sql import _ROWS

pytestmark = pytest.mark.skipif(not part.APSW, reason="apsw is not installed")


@pytest.fixture(scope="module")
def columns(tmp_path_factory: pytest.TempPathFactory) -> tuple[tuple[str, str, bool], ...]:
    """The store's cdr columns (name, declared type, NOT NULL), as the writer sends them."""
    path = tmp_path_factory.mktemp("store") / "store.db"
    database = Database(f"sqlite:///{path}")
    schema.upgrade(database)
    database.dispose()
    with sqlite3.connect(path) as conn:
        info = {row[1]: (row[2], bool(row[3])) for row in conn.execute("PRAGMA table_info(cdr)")}
    return tuple((name, *info[name]) for name in COLUMNS)


@pytest.fixture(scope="module")
def both(columns) -> Iterator[tuple[part.Scratch, part.Scratch]]:
    """A scratch table in apsw's SQLite and one in the standard library's."""
    children = (
        part.Scratch(part.open_file(":memory:")),
        part.Scratch(sqlite3.connect(":memory:", isolation_level=None)),
    )
    for child in children:
        part.create_table(child.conn, columns)
    yield children
    for child in children:
        child.conn.close()


def _verdict(child: part.Scratch, fields: list[str]) -> Any:
    """The row as the child's scratch table holds it (each column with its SQLite type), or
    the doubt it raised."""
    child.conn.execute("DELETE FROM cdr")
    try:
        child.add_with(yeastar_sql.ROWS_SQL, [[*fields, ",".join(fields)]], None)
    except yeastar_sql.Doubt:
        return "doubt"
    spelled = ", ".join(f"{name}, typeof({name})" for name in COLUMNS)
    return list(child.conn.execute(f"SELECT {spelled} FROM cdr"))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fields=_ROWS)
def test_apsws_sqlite_refuses_and_stores_every_row_as_the_standard_librarys_does(both, fields):
    in_apsw, in_stdlib = both
    assert _verdict(in_apsw, fields) == _verdict(in_stdlib, fields)


@pytest.mark.parametrize("width", [13, 15], ids=["a field short", "a field more"])
def test_a_row_of_the_wrong_width_is_a_doubt_in_apsw_too(both, width):
    fields = make_cdr().csv_fields()
    fields = [*fields, "x"][:width]
    assert [_verdict(child, fields) for child in both] == ["doubt", "doubt"]


def _job(tmp_path: Path, columns: tuple[tuple[str, str, bool], ...], data: bytes) -> part.Job:
    source = tmp_path / "calls.csv"
    source.write_bytes(data)
    return part.Job(
        str(source),
        0,
        len(data),
        str(tmp_path / "part.db"),
        str(tmp_path / "counts.db"),
        summary.count_into_sql("cdr", "counts.counts"),
        summary.tally_into_sql("counts.counts"),
        columns,
        SourceProfile("yeastar"),
        yeastar_sql.CHUNK_BYTES,
    )


@pytest.mark.parametrize("apsw", [True, False], ids=["apsw", "without apsw"])
def test_the_childs_files_are_read_by_the_writers_sqlite(tmp_path, columns, monkeypatch, apsw):
    monkeypatch.setattr(part, "APSW", apsw)
    records = [make_cdr(callid=str(n), status=("ANSWERED", "BUSY")[n % 2]) for n in range(50)]
    job = _job(tmp_path, columns, "".join(r.csv_line() for r in records).encode())
    assert part._load(job) == part.Loaded(50)
    writers = ("2026-05-28 10", "BUSY", "Inbound", 2, 10, 20)  # the writer's tally's one row
    assert part._count(job, [writers]).kinds == {
        ("Outbound", "ANSWERED"): 25,
        ("Outbound", "BUSY"): 25,
    }
    with sqlite3.connect(job.scratch) as conn:  # the writer's library
        conn.execute("ATTACH ? AS counts", (job.counts,))
        lines = [row[0] for row in conn.execute("SELECT line FROM cdr ORDER BY rowid")]
        counts = sorted(conn.execute("SELECT type, status, calls FROM counts.counts"))
    assert lines == [r.csv_line() for r in records]
    assert counts == [
        ("Inbound", "BUSY", 2),
        ("Outbound", "ANSWERED", 25),
        ("Outbound", "BUSY", 25),
    ]


def test_without_apsw_the_child_takes_the_standard_library_and_the_writer_a_larger_share():
    probe = (
        "import sys; sys.modules['apsw'] = None\n"  # as if not installed: its import fails
        "from cdrgate.ingest import parallel, part\n"
        "print(part.APSW, type(part.open_file(':memory:')).__module__, parallel.WRITER_SHARE)"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert found == ["False", "sqlite3", "0.46"]
    assert parallel.WRITER_SHARE < 0.46  # with apsw the child takes more of the file
