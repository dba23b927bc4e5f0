"""The Yeastar fast path on PostgreSQL (COPY into a staging table, rows checked and converted
in SQL) against the Python path: a file it takes is stored exactly as the Python path stores
it; a file it doubts is rolled back and read the Python way, with the same report; nothing of
the attempt (its staging table) is left."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdrgate import cdr
from cdrgate.cdr import CSV_HEADER
from cdrgate.errors import ImportFailed
from cdrgate.ingest import yeastar_pg, yeastar_sql
from cdrgate.ingest.files import ImportResult, import_file
from cdrgate.ingest.formats import Format
from cdrgate.ingest.profile import SourceProfile
from cdrgate.storage import partitions
from cdrgate.storage.cdrs import COLUMNS, row_values
from cdrgate.storage.db import Database
from tests.conftest import make_cdr, migrated_postgres

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def store() -> Iterator[Database]:
    with migrated_postgres() as database:
        yield database


@pytest.fixture
def pg(store: Database) -> Iterator[Database]:
    """The module's store, emptied after each test."""
    yield store
    _empty(store)


@pytest.fixture
def fast_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """How each fast-path attempt ended: "stored" or "doubt"."""
    outcomes: list[str] = []
    load = yeastar_pg.load

    def spy(*args: Any) -> Any:
        try:
            kinds = load(*args)
        except yeastar_sql.Doubt:
            outcomes.append("doubt")
            raise
        outcomes.append("stored")
        return kinds

    monkeypatch.setattr(yeastar_pg, "load", spy)
    return outcomes


def _empty(db: Database) -> None:
    """No rows and no month partitions: the months of the next import are new to the store
    (the fast path loads them apart: storage/pg_months.py)."""
    with db.write() as conn:
        for name in partitions.existing(conn):
            conn.exec_driver_sql(f"DROP TABLE {name}")
        conn.exec_driver_sql("DELETE FROM cdr")
        conn.exec_driver_sql("DELETE FROM cdr_summary")


class _Unseekable(io.BytesIO):
    """A stream the fast path does not take: the Python path's reading of the same bytes."""

    def seekable(self) -> bool:
        return False


def _import(db: Database, stream: io.BytesIO) -> ImportResult | str:
    try:
        return import_file(
            db, "f.csv", stream, Format.yeastar, SourceProfile("yeastar"), report=print
        )
    except ImportFailed as exc:
        return str(exc)


def _contents(db: Database) -> tuple[Any, ...]:
    """Every stored row in id order (ids themselves may skip differently), and cdr_summary."""
    with db.read() as conn:
        rows = conn.exec_driver_sql(f"SELECT {', '.join(COLUMNS)} FROM cdr ORDER BY id").all()
        counts = conn.exec_driver_sql(
            "SELECT * FROM cdr_summary WHERE calls > 0 ORDER BY 1, 2, 3"
        ).all()
    return [tuple(row) for row in rows], [tuple(row) for row in counts]


def _staging_tables(db: Database) -> int:
    with db.read() as conn:
        found = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_class WHERE relname = %(name)s", {"name": yeastar_pg.STAGE}
        )
        return int(found.scalar_one())


def _both_paths(db: Database, data: bytes, before: bytes = b"") -> tuple[Any, Any]:
    """(result, contents) of importing ``data`` the fast way and the Python way, each into
    the store holding only what importing ``before`` (the Python way) stores."""
    outcomes = []
    for stream in (io.BytesIO(data), _Unseekable(data)):
        _empty(db)
        if before:
            _import(db, _Unseekable(before))
        outcomes.append((_import(db, stream), _contents(db)))
        assert _staging_tables(db) == 0
    return outcomes[0], outcomes[1]


def _lines(*records: cdr.CdrRecord) -> str:
    return "".join(record.csv_line() for record in records)


def test_a_plain_file_is_parsed_by_postgresql_not_python(pg, fast_runs, monkeypatch):
    def refuse(_fields: object) -> None:
        raise AssertionError("the Python parser was called")

    data = CSV_HEADER + _lines(make_cdr(callid="1"), make_cdr(callid="2", type="Internal"))
    monkeypatch.setattr(cdr, "parse_fields", refuse)
    result = _import(pg, io.BytesIO(data.encode()))
    assert isinstance(result, ImportResult)
    assert (result.rows, result.inserted) == (2, 2)
    assert result.kinds == {("Outbound", "ANSWERED"): 1, ("Internal", "ANSWERED"): 1}
    assert fast_runs == ["stored"]


_RECORDS = [
    make_cdr(callid=str(n), timestart=f"2026-0{1 + n % 4}-2{n % 9} 1{n % 10}:00:0{n % 10}")
    for n in range(12)
]
_QUOTED = [
    make_cdr(callid="q1", callfrom='"Bob" <1000>', recording="a,b.wav"),
    make_cdr(callid="q2", didnumber="two\r\nlines", pincode=""),
]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(CSV_HEADER + _lines(*_RECORDS), id="header"),
        pytest.param(_lines(*_RECORDS), id="no-header"),
        pytest.param("\ufeff" + CSV_HEADER + _lines(*_RECORDS), id="bom"),
        pytest.param((CSV_HEADER + _lines(*_RECORDS)).replace("\n", "\r\n"), id="crlf"),
        pytest.param(_lines(*_RECORDS[:5], *_QUOTED, *_RECORDS[5:]), id="quoted-fields"),
        pytest.param(
            _lines(*_RECORDS[:4]) + CSV_HEADER.upper() + _lines(*_RECORDS[4:]), id="header-inside"
        ),
        pytest.param(_lines(*_RECORDS, *_RECORDS[2:5], _RECORDS[0]), id="duplicates-in-file"),
        pytest.param(_lines(*_RECORDS[:3]) + "\n" + _lines(*_RECORDS[3:]), id="blank-line"),
        pytest.param(_lines(*_RECORDS).removesuffix("\n"), id="no-final-line-end"),
    ],
)
@pytest.mark.parametrize("chunk", [yeastar_pg.CHUNK_BYTES, 300])
def test_a_file_the_fast_path_takes_is_stored_as_the_python_path_stores_it(
    pg, fast_runs, monkeypatch, data, chunk
):
    monkeypatch.setattr(yeastar_pg, "CHUNK_BYTES", chunk)
    fast, slow = _both_paths(pg, data.encode())
    assert fast == slow
    assert fast_runs == ["stored"]


def test_duplicates_of_stored_rows_are_skipped_and_counted_once(pg, fast_runs):
    before = _lines(*_RECORDS[:6]).encode()
    fast, slow = _both_paths(pg, _lines(*_RECORDS[3:]).encode(), before)
    assert fast == slow
    result = fast[0]
    assert (result.rows, result.inserted) == (9, 6)
    assert fast_runs == ["stored"]


def test_rows_of_months_waiting_in_the_default_partition_go_to_their_month_partitions(
    pg, fast_runs, monkeypatch
):
    # Each month has a row in cdr_default (its partition's creation gave up once), so it is
    # not loaded apart: small chunks, and each month's partition is attached (on another
    # connection, moving that row) while the transaction is inserting; pg_bulk.ensure_months
    # makes the INSERT route rows to it.
    monkeypatch.setattr(yeastar_pg, "CHUNK_BYTES", 300)
    records = [
        make_cdr(callid=f"{month}.{day}", timestart=f"2033-{month:02d}-{day:02d} 00:00:00")
        for month in range(1, 13)
        for day in range(1, 4)
    ]
    names = ", ".join(COLUMNS)
    with pg.write() as conn:  # no month partition yet: the rows land in cdr_default
        for month in range(1, 13):
            row = row_values(
                make_cdr(callid=f"w{month}", timestart=f"2033-{month:02d}-28 00:00:00")
            )
            conn.exec_driver_sql(
                f"INSERT INTO cdr ({names}) VALUES ({', '.join(['%s'] * len(COLUMNS))})", tuple(row)
            )
    result = _import(pg, io.BytesIO(_lines(*records).encode()))
    assert isinstance(result, ImportResult) and result.inserted == len(records)
    assert fast_runs == ["stored"]
    with pg.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM cdr_default").scalar_one() == 0
        assert conn.exec_driver_sql("SELECT count(*) FROM cdr").scalar_one() == len(records) + 12


def test_a_chunk_of_stored_and_new_months_keeps_file_order_and_the_duplicate_rule(pg, fast_runs):
    # January is stored, February new: one chunk goes to both sides (pg_months), its ids
    # still in file order, January's duplicate skipped.
    january = make_cdr(callid="j0", timestart="2033-01-05 00:00:00")
    records = [
        make_cdr(callid=f"{month}.{day}", timestart=f"2033-0{month}-{day:02d} 00:00:00")
        for day in range(1, 6)
        for month in (2, 1)
    ]
    fast, slow = _both_paths(pg, _lines(*records, january).encode(), _lines(january).encode())
    assert fast == slow
    assert (fast[0].rows, fast[0].inserted) == (11, 10)
    assert fast_runs == ["stored"]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("timestart=2026-02-30 00:00:00", "not a real date: '2026-02-30'"),
        ("timestart=2026-01-01 24:00:00", "not a real time of day"),
        ("callduraction=-1", "callduraction is not a whole number of seconds"),
        ("talkduraction=2147483648", "talkduraction is out of range"),
        ("callid=", "callid is empty"),
        # Times the cast reads (parsed once a row whatever the rest: yeastar_pg._rows_sql).
        ("timestart=infinity", "not a yyyy-mm-dd hh:mm:ss time"),
        ("timestart=2026-01-01T00:00:00", "not a yyyy-mm-dd hh:mm:ss time"),
        # A time the cast refuses, in a row refused first for its callid.
        ("callid=;timestart=soon", "callid is empty"),
    ],
)
def test_a_bad_row_is_reported_at_its_line_and_nothing_is_stored(
    pg, fast_runs, monkeypatch, bad, reason
):
    monkeypatch.setattr(yeastar_pg, "CHUNK_BYTES", 300)
    fields = make_cdr(callid="bad").csv_fields()
    for change in bad.split(";"):
        name, value = change.split("=")
        fields[cdr.CSV_COLUMNS.index(name)] = value
    data = CSV_HEADER + _lines(*_RECORDS) + ",".join(fields) + "\n" + _lines(make_cdr())
    result = _import(pg, io.BytesIO(data.encode()))
    assert isinstance(result, str) and f"f.csv:{len(_RECORDS) + 2}: " in result
    assert reason in result
    assert fast_runs == ["doubt"]
    assert _contents(pg) == ([], [])
    assert _staging_tables(pg) == 0


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"a,b\n", id="narrow-row"),
        pytest.param(_lines(*_RECORDS[:2]).encode() + b"\xff\xfe,x\n", id="not-utf8"),
        pytest.param(
            _lines(*_RECORDS[:2]).encode() + b"\\.\n" + _lines(_RECORDS[3]).encode(),
            id="copy-end-marker",
        ),
        pytest.param(
            _lines(make_cdr(callduraction=42)).replace(",42,", ",042,").encode(),
            id="duration-not-canonical",
        ),
        pytest.param(_lines(make_cdr(callfrom="a\x00b")).encode(), id="nul"),
    ],
)
def test_a_file_in_doubt_is_read_by_the_python_path_with_the_same_outcome(pg, fast_runs, data):
    fast, slow = _both_paths(pg, data)
    assert fast == slow
    assert fast_runs == ["doubt"]


# Whole files of odd rows: whatever the fast path does with them, the outcome is Python's.
_FIELD = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")
    | st.sampled_from(',"\r\n\ufeff'),
    max_size=6,
)
_GOOD = st.builds(
    lambda callid, talk, recording: make_cdr(
        callid=callid, talkduraction=talk, recording=recording
    ).csv_fields(),
    st.sampled_from(["1", "2", "a.1"]),
    st.integers(0, 100),
    st.sampled_from(["", "x.wav", 'q "x", y', "multi\r\nline"]),
)


@st.composite
def _files(draw: st.DrawFn) -> bytes:
    rows = draw(st.lists(st.one_of(_GOOD, _GOOD, _GOOD, st.lists(_FIELD, max_size=15))))
    lines = [
        cdr.render_csv_line(row) if draw(st.booleans()) else ",".join(row) + "\n" for row in rows
    ]
    if draw(st.booleans()):
        lines.insert(0, CSV_HEADER)
    text = "".join(lines)
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    return text.encode()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_files(), chunk=st.sampled_from([yeastar_pg.CHUNK_BYTES, 128]))
def test_any_file_imports_the_same_through_either_path(store, data, chunk):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(yeastar_pg, "CHUNK_BYTES", chunk)
        fast, slow = _both_paths(store, data)
    _empty(store)
    assert fast == slow
