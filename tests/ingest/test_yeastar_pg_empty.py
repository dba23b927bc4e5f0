"""A Yeastar file of several chunks into an empty PostgreSQL store, on two connections
(ingest/yeastar_pg_empty.py): stored exactly as the Python path stores it, in time order or
not; a failed or interrupted import leaves the store as it was and no table behind."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest

from cdrgate.cdr import CSV_HEADER
from cdrgate.ingest import yeastar_pg, yeastar_pg_empty
from cdrgate.ingest.files import ImportResult
from cdrgate.storage import partitions
from cdrgate.storage.db import Database
from tests.conftest import make_cdr, migrated_postgres
from tests.ingest.test_yeastar_pg import _both_paths, _contents, _empty, _import, _lines

pytestmark = pytest.mark.postgres

# A few rows a chunk: a month spans several chunks, and a file many.
_CHUNK = 400


@pytest.fixture(scope="module")
def store() -> Iterator[Database]:
    with migrated_postgres() as database:
        yield database


@pytest.fixture
def pg(store: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """The module's store with small chunks, emptied after each test."""
    monkeypatch.setattr(yeastar_pg, "CHUNK_BYTES", _CHUNK)
    yield store
    _empty(store)


@pytest.fixture
def two_connection_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """How each load on two connections ended: "stored" or the exception's name."""
    outcomes: list[str] = []
    load = yeastar_pg_empty.load

    def spy(*args: Any) -> None:
        try:
            load(*args)
        except BaseException as exc:
            outcomes.append(type(exc).__name__)
            raise
        outcomes.append("stored")

    monkeypatch.setattr(yeastar_pg_empty, "load", spy)
    return outcomes


def _import_tables(db: Database) -> list[str]:
    with db.read() as conn:
        return list(
            conn.exec_driver_sql(
                "SELECT relname FROM pg_class WHERE starts_with(relname, %(prefix)s)",
                {"prefix": yeastar_pg_empty.PREFIX},
            ).scalars()
        )


def _month(month: int, count: int, prefix: str = "") -> list[Any]:
    return [
        make_cdr(callid=f"{prefix}{month}.{n}", timestart=f"2031-{month:02d}-{1 + n:02d} 10:00:00")
        for n in range(count)
    ]


_IN_ORDER = [record for month in (1, 2, 3, 4) for record in _month(month, 8)]


def test_a_file_in_time_order_is_stored_as_the_python_path_stores_it(pg, two_connection_runs):
    data = CSV_HEADER + _lines(*_IN_ORDER[:5], _IN_ORDER[2], *_IN_ORDER[5:])
    fast, slow = _both_paths(pg, data.encode())
    assert fast == slow
    assert (fast[0].rows, fast[0].inserted) == (33, 32)
    assert two_connection_runs == ["stored"]
    assert _import_tables(pg) == []


def test_rows_of_a_month_built_already_join_it_in_file_order(pg, two_connection_runs):
    # January comes back after February and March have gone by (its table built meanwhile),
    # twice, with a duplicate of a January row stored before and one of the late rows.
    january, late = _month(1, 6), _month(1, 4, prefix="late")
    records = [*january, *_month(2, 8), *_month(3, 8), *late[:2], january[1], *_month(4, 8)]
    records += [*late[2:], late[0]]
    fast, slow = _both_paths(pg, _lines(*records).encode())
    assert fast == slow
    assert (fast[0].rows, fast[0].inserted) == (len(records), len(records) - 2)
    assert two_connection_runs == ["stored"]
    assert _import_tables(pg) == []


def test_a_bad_row_sends_the_file_to_the_python_path_and_leaves_no_table(pg, two_connection_runs):
    fields = make_cdr(callid="bad").csv_fields()
    fields[1] = "2031-02-30 10:00:00"
    data = _lines(*_IN_ORDER[:20]) + ",".join(fields) + "\n" + _lines(*_IN_ORDER[20:])
    result = _import(pg, io.BytesIO(data.encode()))
    assert isinstance(result, str) and "f.csv:21: " in result
    assert two_connection_runs == ["Doubt"]  # refused here, by the Python path's rules
    assert _contents(pg) == ([], [])
    assert _import_tables(pg) == []


def test_a_bad_row_inside_a_chunk_being_copied_leaves_nothing(pg, two_connection_runs, monkeypatch):
    # Chunks of 8-13 rows: the bad row comes after rows of its chunk already written to an
    # open COPY, which is then abandoned with the chunk's transaction.
    monkeypatch.setattr(yeastar_pg, "CHUNK_BYTES", 1200)
    fields = make_cdr(callid="bad", timestart="2031-02-10 10:00:00").csv_fields()
    fields[4] = "-1"
    data = _lines(*_IN_ORDER[:18]) + ",".join(fields) + "\n" + _lines(*_IN_ORDER[18:])
    result = _import(pg, io.BytesIO(data.encode()))
    assert isinstance(result, str) and "f.csv:19: " in result
    assert two_connection_runs == ["Doubt"]
    assert _contents(pg) == ([], [])
    assert _import_tables(pg) == []


def _interrupt_the_builder(monkeypatch: pytest.MonkeyPatch) -> None:
    prepare = yeastar_pg_empty._prepare
    built: list[Any] = []

    def second_build_interrupted(*args: Any) -> int:
        if built:
            raise KeyboardInterrupt
        built.append(args)
        return prepare(*args)

    monkeypatch.setattr(yeastar_pg_empty, "_prepare", second_build_interrupted)


def _interrupt_the_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = yeastar_pg.blocks

    def interrupted_at_the_fifth_chunk(stream: Any) -> Iterator[bytes]:
        for number, block in enumerate(blocks(stream)):
            if number == 4:
                raise KeyboardInterrupt
            yield block

    monkeypatch.setattr(yeastar_pg, "blocks", interrupted_at_the_fifth_chunk)


@pytest.mark.parametrize("where", [_interrupt_the_builder, _interrupt_the_loader])
def test_an_interrupted_import_leaves_the_store_as_it_was(pg, two_connection_runs, where):
    data = _lines(*_IN_ORDER).encode()
    with pytest.MonkeyPatch.context() as patch:
        where(patch)
        with pytest.raises(KeyboardInterrupt):
            _import(pg, io.BytesIO(data))
    assert two_connection_runs == ["KeyboardInterrupt"]
    assert _contents(pg) == ([], [])
    assert _import_tables(pg) == []
    with pg.read() as conn:
        assert partitions.existing(conn) == {}
    result = _import(pg, io.BytesIO(data))
    assert isinstance(result, ImportResult) and result.inserted == len(_IN_ORDER)
    assert two_connection_runs == ["KeyboardInterrupt", "stored"]


def test_tables_of_a_killed_import_are_dropped_by_the_next_one(pg, two_connection_runs):
    with pg.write() as conn:  # a loader's tables whose backend is gone (no such pid)
        conn.exec_driver_sql(f"CREATE TABLE {yeastar_pg_empty.PREFIX}0 (a int)")
        conn.exec_driver_sql(f"CREATE TABLE {yeastar_pg_empty.PREFIX}0_203101 (a int)")
    result = _import(pg, io.BytesIO(_lines(*_IN_ORDER).encode()))
    assert isinstance(result, ImportResult) and result.inserted == len(_IN_ORDER)
    assert two_connection_runs == ["stored"]
    assert _import_tables(pg) == []


def test_a_store_holding_rows_is_loaded_on_one_connection(pg, two_connection_runs):
    before = _lines(*_IN_ORDER[:3]).encode()
    fast, slow = _both_paths(pg, _lines(*_IN_ORDER).encode(), before)
    assert fast == slow
    assert two_connection_runs == []


def test_ids_follow_the_file_and_the_next_write_takes_a_later_one(pg, two_connection_runs):
    # Headers in the middle (a file concatenated from two exports) take ids of their own
    # lines' block, unused: the rows' ids still follow the file, and cdr's sequence has moved
    # past every one of them.
    data = _lines(*_IN_ORDER[:12]) + CSV_HEADER + _lines(*_IN_ORDER[12:])
    result = _import(pg, io.BytesIO(data.encode()))
    assert isinstance(result, ImportResult) and result.inserted == len(_IN_ORDER)
    assert two_connection_runs == ["stored"]
    later = make_cdr(callid="later", timestart="2031-02-20 12:00:00")
    _import(pg, io.BytesIO(_lines(later).encode()))
    with pg.read() as conn:
        callids = conn.exec_driver_sql("SELECT callid FROM cdr ORDER BY id").scalars().all()
    assert callids == [record.callid for record in (*_IN_ORDER, later)]


def _odd_rows() -> list[str]:
    """Rows the client's quick checks do not vouch for, each of which the Python path stores
    (some in another form than read: ``line`` is then rendered, as that path renders it)."""
    odd: list[str] = []
    for change in (
        {"callduraction": " 42"},  # padded: stored as 42, line rendered
        {"talkduraction": "007"},
        {"callduraction": "123456"},  # past the quick set of durations
        {"timestart": " 2031-02-03 04:05:06"},  # spaces around the time
        {"callfrom": "a\x00b"},  # NUL dropped
        {"timestart": "2032-02-29 23:59:59"},  # a leap day, the day's last second
        {"recording": "x\\y.wav", "pincode": "tab\there"},  # COPY's text escapes
    ):
        fields = make_cdr(callid=f"odd{len(odd)}", timestart="2031-02-10 10:00:00").csv_fields()
        for name, value in change.items():
            fields[CSV_HEADER.split(",").index(name)] = value
        odd.append(",".join(fields) + "\n")
    return odd


def test_rows_the_quick_checks_refuse_are_stored_by_the_python_paths_rules(pg, two_connection_runs):
    rows = _odd_rows()
    data = _lines(*_IN_ORDER[:10]) + "".join(rows[:4]) + CSV_HEADER.upper()
    data += _lines(*_IN_ORDER[10:]) + "".join(rows[4:])
    fast, slow = _both_paths(pg, data.encode())
    assert fast == slow
    assert fast[0].inserted == len(_IN_ORDER) + len(rows)
    # Stored by this path, not handed to the Python path as a doubt.
    assert two_connection_runs == ["stored"]


def test_blank_lines_are_no_rows(pg, two_connection_runs):
    data = "\n" + _lines(*_IN_ORDER[:7]) + "\n\n" + _lines(*_IN_ORDER[7:]) + "\r\n"
    fast, slow = _both_paths(pg, data.encode())
    assert fast == slow
    assert fast[0].inserted == len(_IN_ORDER)
    assert two_connection_runs == ["stored"]


def test_a_quoted_or_crlf_file_is_stored_as_the_python_path_stores_it(pg, two_connection_runs):
    quoted = make_cdr(callid="q", timestart="2031-03-03 03:03:03", callfrom='"Bob" <1>')
    data = CSV_HEADER + _lines(*_IN_ORDER[:12], quoted, *_IN_ORDER[12:])
    fast, slow = _both_paths(pg, data.replace("\n", "\r\n").encode())
    assert fast == slow
    assert two_connection_runs == ["stored"]


def test_months_the_loader_prepares_are_stored_as_the_python_path_stores_them(
    pg, two_connection_runs, monkeypatch
):
    # The builder starts only when the file is read: the loader takes every month it can
    # (its indexes, range CHECK and counts in its own transactions), the builder adds them.
    start = yeastar_pg_empty._Builder.start
    monkeypatch.setattr(yeastar_pg_empty._Builder, "start", lambda self: None)
    finish = yeastar_pg_empty._Builder.finish

    def started_late(self: Any, prepared: list[Any]) -> int:
        assert len(prepared) == 4  # every month
        start(self)
        return finish(self, prepared)

    monkeypatch.setattr(yeastar_pg_empty._Builder, "finish", started_late)
    # A duplicate within January (dropped by its unique index's build, counted once).
    data = CSV_HEADER + _lines(*_IN_ORDER[:5], _IN_ORDER[2], *_IN_ORDER[5:])
    fast, slow = _both_paths(pg, data.encode())
    assert fast == slow
    assert (fast[0].rows, fast[0].inserted) == (33, 32)
    assert two_connection_runs == ["stored", "stored"] or two_connection_runs == ["stored"]
    assert _import_tables(pg) == []
