"""The paged export: every matching CDR exactly once, in download order, whatever the density
and however the pages grow, and nothing held in the database between pages."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdrgate.cdr import CSV_HEADER
from cdrgate.csvsafe import safe_line
from cdrgate.errors import StorageUnavailable
from cdrgate.services import export
from cdrgate.services.export import Export, first_page
from cdrgate.storage import cdrs
from cdrgate.storage.cdrs import CdrQuery
from cdrgate.timefmt import format_pbx_time, parse_pbx_time
from tests.conftest import make_cdr

BASE = parse_pbx_time("2026-05-28 00:00:00")


def _drain(exp: Export) -> str:
    chunks = []
    while (chunk := exp.next_chunk()) is not None:
        chunks.append(chunk)
    return b"".join(chunks).decode()


def _export(db, query: CdrQuery, safe: bool = False) -> tuple[Export, list[tuple[Any, ...]]]:
    finished: list[tuple[Any, ...]] = []
    page = first_page(db, query, safe=safe)
    exp = Export(db, page, "x.csv", safe, lambda *args: finished.append(args))
    return exp, finished


def _one_a_second(db, count: int) -> None:
    with db.write() as conn:
        cdrs.insert_records(
            db,
            conn,
            [make_cdr(callid=f"c{i}", timestart=format_pbx_time(BASE + i)) for i in range(count)],
        )


@pytest.fixture
def tiny_pages(monkeypatch):
    """Pages of 3 rows, so a handful of CDRs exercises widening, narrowing and dense seconds."""
    monkeypatch.setattr(export, "PAGE_ROWS", 3)
    monkeypatch.setattr(export, "MAX_PAGE_ROWS", 5)


offsets = st.lists(
    st.tuples(
        st.integers(0, 40) | st.integers(0, 3) | st.integers(0, 86400 * 40),
        st.sampled_from(["1000", "1001", "2000"]),
    ),
    max_size=40,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=offsets,
    lo=st.integers(0, 50),
    width=st.integers(0, 86400 * 41),
    exts=st.none() | st.just(("1000",)) | st.just(("1000", "2000")),
    safe=st.booleans(),
    behind=st.lists(st.booleans(), max_size=20),
)
def test_the_pages_join_into_exactly_the_one_query_result(
    db, tiny_pages, rows, lo, width, exts, safe, behind
):
    """Whatever the client's pace: after some pages the next is read ahead and dropped, as
    when the client made a send wait (``behind``), and read again at the first size."""
    with db.write() as conn:
        conn.exec_driver_sql("DELETE FROM cdr")
    records = [
        make_cdr(callid=f"c{i:03d}", timestart=format_pbx_time(BASE + offset), callfrom=ext)
        for i, (offset, ext) in enumerate(rows)
    ]
    with db.write() as conn:
        cdrs.insert_records(db, conn, records)
    query = CdrQuery(BASE + lo, BASE + lo + width, exts)
    with db.read() as conn:
        lines = cdrs.read_lines(conn, query)
    expected = CSV_HEADER + "".join(safe_line(line) if safe else line for line in lines)

    exp, finished = _export(db, query, safe)
    chunks = []
    while (chunk := exp.next_chunk()) is not None:
        chunks.append(chunk)
        if behind and behind.pop():
            exp.read_ahead()
            exp.fell_behind()
    assert b"".join(chunks).decode() == expected
    exp.finish("ok")
    exp.finish("aborted")  # once only
    assert finished == [("ok", len(expected.splitlines()) - 1, len(expected.encode()))]


def test_an_export_holds_no_transaction_between_pages(db, tiny_pages):
    """A writer (and, on SQLite, a checkpoint) is never blocked by a paused download."""
    _one_a_second(db, 20)
    exp, _ = _export(db, CdrQuery(BASE, BASE + 100))
    first, second = exp.next_chunk(), exp.next_chunk()
    assert first is not None and second is not None
    begun = first + second
    assert db.connections_in_use() == 0
    if db.is_sqlite:
        with db.connect() as conn:
            busy, _log, _checkpointed = conn.exec_driver_sql(
                "PRAGMA wal_checkpoint(TRUNCATE)"
            ).one()
        assert busy == 0
    assert (begun.decode() + _drain(exp)).count("\n") == 1 + 20


def test_a_long_exports_pages_grow_after_the_first_up_to_a_bound(db, tiny_pages):
    _one_a_second(db, 300)
    query = CdrQuery(BASE, BASE + 1000)
    exp, _ = _export(db, query)
    sizes: list[int] = []
    while exp.next_chunk() is not None:
        sizes.append(exp.rows - sum(sizes))
    assert sum(sizes) == 300
    assert sizes[0] <= export.MAX_PAGE_ROWS
    assert max(sizes) > export.MAX_PAGE_ROWS  # grown
    assert max(sizes) <= export.GROWN_PAGE * export.MAX_PAGE_ROWS


def test_a_page_read_ahead_is_not_counted_as_sent(db, tiny_pages):
    """The audit counts what was handed to the client, not the page read ahead of it."""
    _one_a_second(db, 20)
    exp, finished = _export(db, CdrQuery(BASE, BASE + 100))
    first = exp.next_chunk()
    assert first is not None
    exp.read_ahead()
    assert exp.ready
    exp.finish("aborted")
    assert finished == [("aborted", first.decode().count("\n") - 1, len(first))]


def _export_whose_storage_goes_after_the_first_chunk(db: Any, monkeypatch: Any) -> Export:
    """A multi-page export with its first chunk handed out, every later page read failing."""
    _one_a_second(db, 20)
    exp, _ = _export(db, CdrQuery(BASE, BASE + 100))
    assert exp.next_chunk() is not None

    def gone(*args: Any, **kwargs: Any) -> Any:
        raise StorageUnavailable("database went away")

    monkeypatch.setattr(cdrs, "read_whole_seconds", gone)
    return exp


def test_a_storage_failure_while_reading_ahead_is_raised_with_the_next_chunk(
    db, tiny_pages, monkeypatch
):
    exp = _export_whose_storage_goes_after_the_first_chunk(db, monkeypatch)
    exp.read_ahead()  # kept, not raised: the chunk before it is still being sent
    with pytest.raises(StorageUnavailable):
        exp.next_chunk()


def test_a_storage_failure_reading_a_page_not_read_ahead_is_raised_not_taken_for_the_end(
    db, tiny_pages, monkeypatch
):
    """A client that fell behind gets its pages read only when it asks: a failed read must
    still end the download as failed, never as a complete (short) file."""
    exp = _export_whose_storage_goes_after_the_first_chunk(db, monkeypatch)
    with pytest.raises(StorageUnavailable):
        exp.next_chunk()


@pytest.mark.parametrize("exts", [None, ("1000",)])
def test_a_slice_fuller_than_a_page_is_cut_at_a_whole_second_not_read_again(
    db, tiny_pages, monkeypatch, exts
):
    with db.write() as conn:
        cdrs.insert_records(
            db,
            conn,
            [
                make_cdr(callid=f"c{i:03d}", timestart=format_pbx_time(BASE + i // 2))
                for i in range(100)
            ],
        )
    reads: list[int] = []
    read = cdrs.read_whole_seconds

    def counted(*args: Any, **kwargs: Any) -> Any:
        lines, cut = read(*args, **kwargs)
        reads.append(lines.rows)
        return lines, cut

    monkeypatch.setattr(cdrs, "read_whole_seconds", counted)
    # The first try is the whole range (and ten years wider): one query, cut, no narrowing.
    exp, _ = _export(db, CdrQuery(BASE, BASE + 86400 * 3650, exts))
    chunks = 0
    while exp.next_chunk() is not None:
        chunks += 1
    assert exp.rows == 100
    assert sum(reads) == 100  # each CDR once
    assert len([n for n in reads if n]) == chunks  # no slice read again narrower
