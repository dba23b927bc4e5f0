"""A long export's page joined by SQLite in one value: exactly the rows the row-by-row read
gives, in download order, and a join out of order is caught, never sent."""

from __future__ import annotations

import logging
import random
import sqlite3

import pytest

from cdrgate.storage import cdrs
from cdrgate.storage.cdrs import CdrQuery
from tests.conftest import make_cdr

BASE = 1_780_000_000
# The co-routine join with its subquery in reverse order: what a library that joined rows in
# any order but the subquery's could produce.
_REVERSED = cdrs._JOINED_COROUTINE.replace(
    "ORDER BY ts, callid, sn)", "ORDER BY ts DESC, callid DESC, sn DESC)"
)
_COROUTINE_JOIN = pytest.mark.skipif(
    sqlite3.sqlite_version_info >= cdrs._ORDER_IN_AGGREGATE,
    reason="this SQLite defines the join order itself (group_concat ... ORDER BY)",
)


def _store_shuffled(db, count: int, seconds: int) -> None:
    """CDRs inserted in random order, many per second (ties on ts), keys in random order."""
    rng = random.Random(7)
    records = [
        make_cdr(
            callid=f"{BASE + rng.randrange(seconds)}.{rng.randrange(1000)}",
            sn=f"{n:05d}",
            timestart=f"2026-05-28 10:00:{rng.randrange(seconds):02d}",
            callfrom=rng.choice(["1000", "1001"]),
        )
        for n in range(count)
    ]
    rng.shuffle(records)
    with db.write() as conn:
        cdrs.insert_records(db, conn, records)


def _row_read(db, query: CdrQuery) -> bytes:
    with db.read() as conn:
        return "".join(cdrs.read_lines(conn, query)).encode()


def _page(db, query: CdrQuery) -> cdrs.Lines:
    with db.read() as conn:
        lines, cut = cdrs.read_whole_seconds(conn, query, most=10_000)
    assert cut is None
    return lines


def test_a_joined_page_holds_exactly_the_rows_of_the_row_read_in_order(db, monkeypatch):
    _store_shuffled(db, 600, 20)
    start = _store_start(db)
    expected_by_range = {}
    for lo, hi in ((0, 59), (3, 11), (7, 7), (30, 40)):
        expected_by_range[lo, hi] = _row_read(db, CdrQuery(start + lo, start + hi))
    if db.is_sqlite:  # the page must come from SQLite's join, not from the rows
        monkeypatch.setattr(cdrs, "_fetch_utf8", _no_row_read)
    for lo, hi in ((0, 59), (3, 11), (7, 7), (30, 40)):
        query = CdrQuery(start + lo, start + hi)
        page = _page(db, query)
        expected = expected_by_range[lo, hi]
        assert page.body == expected
        assert page.rows == expected.count(b"\n")


def test_a_page_read_one_by_one_holds_the_same_lines(db):
    _store_shuffled(db, 200, 10)
    query = CdrQuery(_store_start(db), _store_start(db) + 59)
    with db.read() as conn:
        lines, _ = cdrs.read_whole_seconds(conn, query, most=10_000, each=True)
    assert lines.each is not None and lines.body == b""
    assert b"".join(lines.each) == _row_read(db, query)


def test_this_sqlite_library_joins_a_page_in_its_subquerys_order():
    assert cdrs._check_join_order()


@_COROUTINE_JOIN
def test_a_library_that_joins_out_of_order_fails_the_startup_check(monkeypatch):
    monkeypatch.setattr(cdrs, "_JOINED_COROUTINE", _REVERSED)
    assert not cdrs._check_join_order()


@_COROUTINE_JOIN
def test_a_page_joined_out_of_order_is_caught_and_read_row_by_row(db, monkeypatch, caplog):
    if not db.is_sqlite:
        pytest.skip("SQLite's join")
    _store_shuffled(db, 300, 10)
    monkeypatch.setattr(cdrs._JoinVerdict, "trusted", True)
    monkeypatch.setattr(cdrs, "_JOINED_COROUTINE", _REVERSED)
    query = CdrQuery(_store_start(db), _store_start(db) + 59)
    with caplog.at_level(logging.ERROR, logger="cdrgate.storage"):
        page = _page(db, query)
    assert page.body == _row_read(db, query)
    assert "out of order" in caplog.text
    assert cdrs.joins_in_order() is False  # every later page is read row by row


def _store_start(db) -> int:
    with db.read() as conn:
        return int(conn.exec_driver_sql("SELECT min(ts) FROM cdr").scalar_one())


def _no_row_read(*args: object, **kwargs: object) -> object:
    raise AssertionError("read row by row")
