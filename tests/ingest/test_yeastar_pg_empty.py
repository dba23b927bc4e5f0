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
    assert two_connection_runs == ["DataError"]
    assert _contents(pg) == ([], [])
    assert _import_tables(pg) == []


def _interrupt_the_builder(monkeypatch: pytest.MonkeyPatch) -> None:
    build = yeastar_pg_empty._build
    built: list[Any] = []

    def second_build_interrupted(*args: Any) -> int:
        if built:
            raise KeyboardInterrupt
        built.append(args)
        return build(*args)

    monkeypatch.setattr(yeastar_pg_empty, "_build", second_build_interrupted)


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
