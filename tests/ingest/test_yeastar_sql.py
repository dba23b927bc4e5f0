"""The Yeastar fast path (rows parsed and checked in SQL) against the Python path: whatever
SQL accepts, Python accepts and stores alike; whatever it refuses, the file is then read the
Python way, with the same report."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdrgate import cdr
from cdrgate.cdr import CSV_HEADER, MAX_SECONDS
from cdrgate.errors import ImportFailed
from cdrgate.ingest import yeastar_sql
from cdrgate.ingest.files import ImportResult, import_file
from cdrgate.ingest.formats import Format
from cdrgate.ingest.profile import SourceProfile
from cdrgate.storage import schema
from cdrgate.storage import summary as storage_summary
from cdrgate.storage.cdrs import COLUMNS, insert_sql, row_values
from cdrgate.storage.db import Database
from tests.conftest import make_cdr

# Text a plain line may hold in a field (no comma, quote, CR, LF or NUL: those lines go
# through the csv module), with the characters that have tripped parsers before.
_PLAIN = st.text(st.characters(blacklist_characters=',"\r\n\x00', blacklist_categories=["Cs"]))
_TIMES = st.one_of(
    st.datetimes().map(lambda t: f"{t.year:04d}-{t:%m-%d %H:%M:%S}"),
    st.from_regex(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", fullmatch=True),
    st.sampled_from(
        [
            "2026-02-30 00:00:00",
            "2024-02-29 12:00:00",
            "2023-02-29 12:00:00",
            "2026-01-01 24:00:00",
            "2026-01-01 23:60:00",
            "2026-01-01 23:59:60",
            "0000-01-01 00:00:00",
            "0001-01-01 00:00:00",
            "9999-12-31 23:59:59",
            " 2026-01-01 00:00:00",
            "2026-01-01 00:00:00 ",
            "2026-01-01T00:00:00",
            "2026-01-01 00:00",
            "2026-01-01 00:00:00.000",
            "2026-1-01 00:00:00",
            # Text SQLite's date functions read as a time of their own (now, a Julian day
            # number, a zone), which the round trip through the stored number must refuse.
            "now",
            "2460000.5",
            "1700000000",
            "2026-01-01 00:00:00Z",
            "2026-01-01 00:00:00+01:00",
        ]
    ),
    _PLAIN,
)
_SECONDS = st.one_of(
    st.integers(0, MAX_SECONDS).map(str),
    st.integers(-5, 2**64).map(str),
    st.sampled_from(
        [
            "",
            "007",
            "00",
            " 5",
            "5 ",
            "+5",
            "-0",
            "5.0",
            "1e3",
            "٣",
            "²",
            "0x10",
            str(MAX_SECONDS),
            str(MAX_SECONDS + 1),
            "9" * 30,
            "0" * 30 + "1",
        ]
    ),
    _PLAIN,
)
_ROW = st.tuples(
    st.one_of(st.just(""), _PLAIN),  # callid
    _TIMES,
    _PLAIN, _PLAIN, _SECONDS, _SECONDS,
    *[_PLAIN] * 8,
).map(list)  # fmt: skip


@st.composite
def _near_valid(draw: st.DrawFn) -> list[str]:
    """A valid row with one of the fields parse_fields checks replaced: the edge cases meet
    an otherwise good row, so SQL's verdict on that one field decides."""
    fields = make_cdr(callid=draw(_PLAIN.filter(bool))).csv_fields()
    index = draw(st.sampled_from([0, 1, 4, 5]))
    fields[index] = draw({0: _PLAIN, 1: _TIMES}.get(index, _SECONDS))
    return fields


_ROWS = st.one_of(_ROW, _near_valid())


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path_factory.mktemp('fast') / 'store.db'}")
    schema.upgrade(database)
    yield database
    database.dispose()


@pytest.fixture(scope="module")
def raw(store: Database) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(store.url.removeprefix("sqlite:///"), isolation_level=None)
    yield conn
    conn.close()


def _stored(conn: sqlite3.Connection) -> tuple[Any, ...]:
    """The one stored row, each column with its SQLite type."""
    columns = ", ".join(f"{name}, typeof({name})" for name in COLUMNS)
    rows = conn.execute(f"SELECT {columns} FROM cdr").fetchall()
    assert len(rows) == 1
    return tuple(rows[0])


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fields=_ROWS)
def test_a_row_sql_accepts_is_one_python_accepts_and_is_stored_byte_identical(store, raw, fields):
    line = ",".join(fields)
    raw.execute("BEGIN")
    try:
        raw.execute(yeastar_sql.INSERT_SQL, [*fields, line])
        fast = _stored(raw)
    except sqlite3.IntegrityError:
        fast = None
    finally:
        raw.execute("ROLLBACK")
    try:
        record, ts = cdr.parse_fields(fields)
    except ValueError:
        assert fast is None, "SQL accepted a row Python refuses"
        return
    if fast is None:
        return  # stricter is allowed: the Python path then reads the file
    raw.execute("BEGIN")
    try:
        raw.execute(insert_sql(store), row_values(record, None, ts))
        assert fast == _stored(raw)
    finally:
        raw.execute("ROLLBACK")


def test_the_common_rows_are_accepted_by_sql(raw):
    # The strictness above must not send ordinary files down the slow path.
    for record in (make_cdr(), make_cdr(callduraction=0, talkduraction=0, recording="r.wav")):
        fields = record.csv_fields()
        raw.execute("BEGIN")
        try:
            raw.execute(yeastar_sql.INSERT_SQL, [*fields, ",".join(fields)])
        finally:
            raw.execute("ROLLBACK")


# Whole files: the fast path against the Python path (a stream that cannot seek takes it).
_ANY_FIELD = st.text(
    st.characters(blacklist_categories=["Cs"]) | st.sampled_from(',"\r\n\x00\ufeff'), max_size=8
)
_GOOD = st.builds(
    lambda callid, talk, sn, recording: make_cdr(
        callid=callid, talkduraction=talk, sn=sn, recording=recording
    ).csv_fields(),
    st.sampled_from(["1", "2", "3", "a.1"]),
    st.integers(0, 100),
    st.sampled_from(["A", "B"]),
    st.sampled_from(["", "x.wav", 'q "x", y', "multi\r\nline", "nul\x00"]),
)


@st.composite
def _files(draw: st.DrawFn) -> bytes:
    rows = draw(st.lists(st.one_of(_GOOD, _GOOD, _ROW, st.lists(_ANY_FIELD, max_size=15))))
    lines = [
        cdr.render_csv_line(row) if draw(st.booleans()) else ",".join(row) + "\n" for row in rows
    ]
    if draw(st.booleans()):
        lines.insert(0, CSV_HEADER)
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), "\n")
    text = "".join(lines)
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    if draw(st.booleans()):
        text = "\ufeff" + text
    if draw(st.booleans()):
        text = text.removesuffix("\n")
    return text.encode()


class _Unseekable(io.BytesIO):
    def seekable(self) -> bool:
        return False


def _outcome(db: Database, stream: io.BytesIO) -> tuple[Any, ...]:
    try:
        result: ImportResult | str = import_file(
            db, "f.csv", stream, Format.yeastar, SourceProfile("yeastar"), report=print
        )
    except ImportFailed as exc:
        result = str(exc)
    with db.write() as conn:
        stored = conn.exec_driver_sql(f"SELECT id, {', '.join(COLUMNS)} FROM cdr").all()
        summary = conn.exec_driver_sql("SELECT * FROM cdr_summary ORDER BY 1, 2, 3").all()
        conn.exec_driver_sql("DELETE FROM cdr")
        conn.exec_driver_sql("DELETE FROM cdr_summary")
    return result, stored, summary


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_files(), chunk=st.sampled_from([yeastar_sql.CHUNK_BYTES, 64, 256]))
def test_a_file_imports_the_same_through_either_path(store, data, chunk, monkeypatch_module):
    monkeypatch_module.setattr(yeastar_sql, "CHUNK_BYTES", chunk)
    fast = _outcome(store, io.BytesIO(data))
    slow = _outcome(store, _Unseekable(data))
    assert fast == slow


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _write(path: Path, *records: cdr.CdrRecord, header: bool = True) -> Path:
    path.write_text((CSV_HEADER if header else "") + "".join(r.csv_line() for r in records))
    return path


def _import(db: Database, path: Path, progress: Any = None) -> ImportResult:
    with open(path, "rb") as stream:
        return import_file(
            db, str(path), stream, Format.yeastar, SourceProfile("yeastar"), report=print,
            progress=progress,
        )  # fmt: skip


def test_a_plain_file_is_parsed_by_sqlite_not_python(db, tmp_path, monkeypatch):
    if not db.is_sqlite:
        pytest.skip("the fast path is SQLite's")

    def refuse(_fields: object) -> None:
        raise AssertionError("the Python parser was called")

    path = _write(tmp_path / "a.csv", make_cdr(callid="1"), make_cdr(callid="2", type="Internal"))
    monkeypatch.setattr(cdr, "parse_fields", refuse)
    result = _import(db, path)
    assert (result.rows, result.inserted) == (2, 2)
    assert result.kinds == {("Outbound", "ANSWERED"): 1, ("Internal", "ANSWERED"): 1}


def test_a_bad_row_after_many_good_chunks_is_reported_exactly_and_stores_nothing(
    db, tmp_path, monkeypatch
):
    monkeypatch.setattr(yeastar_sql, "CHUNK_BYTES", 200)
    good = [make_cdr(callid=str(n)) for n in range(20)]
    bad = make_cdr(callid="bad", callduraction=0)._replace(timestart="2026-02-30 00:00:00")
    path = _write(tmp_path / "a.csv", *good, bad)
    with pytest.raises(ImportFailed) as failure:
        _import(db, path)
    assert str(failure.value).endswith(":22: not a real date: '2026-02-30'")
    with db.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM cdr").scalar() == 0


def test_progress_counts_each_row_once_when_the_python_path_takes_over(db, tmp_path, monkeypatch):
    monkeypatch.setattr(yeastar_sql, "CHUNK_BYTES", 200)
    # "042" is a duration Python reads as 42 but SQL refuses (the stored line would differ).
    odd = ",".join(make_cdr(callid="odd").csv_fields()).replace(",42,", ",042,", 1)
    path = tmp_path / "a.csv"
    path.write_text("".join(make_cdr(callid=str(n)).csv_line() for n in range(10)) + odd + "\n")
    counted: list[int] = []
    result = _import(db, path, counted.append)
    assert (result.rows, result.inserted, sum(counted)) == (11, 11, 11)


def test_duplicates_and_the_summary_stay_exact_into_a_store_with_rows(db, tmp_path):
    _import(db, _write(tmp_path / "a.csv", make_cdr(callid="1"), make_cdr(callid="2")))
    path = _write(
        tmp_path / "b.csv", make_cdr(callid="2"), make_cdr(callid="3"), make_cdr(callid="3")
    )
    result = _import(db, path)
    assert (result.rows, result.inserted, result.duplicates) == (3, 1, 2)
    assert result.kinds == {("Outbound", "ANSWERED"): 3}
    with db.read() as conn:
        calls = conn.exec_driver_sql("SELECT sum(calls) FROM cdr_summary").scalar()
    assert calls == 3


def _summary_of_stored_rows(db: Database) -> list[tuple[Any, ...]]:
    with db.read() as conn:
        rows = conn.exec_driver_sql(
            "SELECT ts / 3600 * 3600, status, type, count(*), sum(talkduraction), "
            "sum(callduraction) FROM cdr GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        )
        return [tuple(row) for row in rows]


def _summary(db: Database) -> list[tuple[Any, ...]]:
    with db.read() as conn:
        rows = conn.exec_driver_sql("SELECT * FROM cdr_summary WHERE calls > 0 ORDER BY 1, 2, 3")
        return [tuple(row) for row in rows]


def test_cdr_summary_counted_as_the_file_is_read_is_the_stored_rows_grouped(
    db, tmp_path, monkeypatch
):
    monkeypatch.setattr(yeastar_sql, "CHUNK_BYTES", 300)  # a few rows per chunk
    early = [  # before 1970 the SQL hour of a clock hour's rows is not one hour
        make_cdr(callid=f"e{n}", timestart=f"1969-12-31 23:{n:02d}:00", talkduraction=n)
        for n in range(0, 60, 7)
    ]
    quoted = make_cdr(callid="q", callfrom="a,b", timestart="2026-03-01 10:00:00")
    late = [
        make_cdr(callid=str(n), timestart=f"2026-03-01 {n % 24:02d}:59:59", status=status)
        for n, status in enumerate(["ANSWERED", "NO ANSWER", "BUSY"] * 5)
    ]
    _import(db, _write(tmp_path / "a.csv", late[0], late[3]))  # rows already stored
    path = _write(tmp_path / "b.csv", *late, late[4], quoted, *early, make_cdr(callid="last"))
    result = _import(db, path)
    assert (result.rows, result.inserted) == (len(late) + len(early) + 3, len(late) + len(early))
    assert result.kinds == {
        ("Outbound", "ANSWERED"): 5 + len(early) + 2,  # with the quoted and the last row
        ("Outbound", "NO ANSWER"): 5 + 1,  # late[4] twice
        ("Outbound", "BUSY"): 5,
    }
    assert _summary(db) == _summary_of_stored_rows(db)


def test_a_plain_file_of_new_rows_is_counted_without_reading_the_rows_back(
    db, tmp_path, monkeypatch
):
    if not db.is_sqlite:
        pytest.skip("the fast path is SQLite's")
    monkeypatch.setattr(yeastar_sql, "CHUNK_BYTES", 300)
    records = [
        make_cdr(callid=str(n), timestart=f"2026-03-0{1 + n % 3} 1{n}:00:00") for n in range(9)
    ]

    def refuse(*_args: object) -> None:
        raise AssertionError("the stored rows were grouped by SQL")

    monkeypatch.setattr(storage_summary, "add_stored", refuse)
    _import(db, _write(tmp_path / "a.csv", *records))
    monkeypatch.undo()
    assert _summary(db) == _summary_of_stored_rows(db)
    assert sum(row[3] for row in _summary(db)) == 9
