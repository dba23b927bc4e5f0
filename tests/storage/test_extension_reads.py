"""On SQLite an extension's rows are read by their ids (covering index scans, then each row
once); PostgreSQL keeps the UNION of whole rows. Both forms answer the same lines in the same
order, a call between two listed extensions once, ties on the second in (callid, sn) order."""

from __future__ import annotations

import random

import pytest

from cdrgate.cdr import CdrRecord
from cdrgate.ingest.store import store_records
from cdrgate.scope import parse as parse_scope
from cdrgate.storage.cdrs import CdrQuery, _fetch, _params, _template, read_lines, read_whole
from cdrgate.storage.db import Database
from cdrgate.timefmt import parse_pbx_time
from tests.conftest import make_cdr

EXTS = ["1000", "1001", "1002", "1003"]


def _cdrs(seed: int) -> list[CdrRecord]:
    picker = random.Random(seed)
    return [
        make_cdr(
            callid=f"c{picker.randrange(40)}.{i}",
            sn=picker.choice(["sn-a", "sn-b"]),
            # A few seconds only: many rows share their second.
            timestart=f"2026-05-28 10:00:0{picker.randrange(6)}",
            callfrom=picker.choice([*EXTS, "0215550100"]),
            callto=picker.choice([*EXTS, "0215550101"]),
        )
        for i in range(120)
    ]


def _both_forms(db: Database, query: CdrQuery, limit: int | None) -> tuple[list[str], list[str]]:
    with db.read() as conn:
        params = _params(query, None, limit)
        forms = [
            _template(query, None, limit, False, by_rowid=by_rowid) for by_rowid in (True, False)
        ]
        by_ids, by_union = ([row[0] for row in _fetch(conn, stmt, params)] for stmt in forms)
    return by_ids, by_union


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reading_by_row_ids_answers_what_the_union_of_rows_does(db: Database, seed: int):
    if not db.is_sqlite:
        pytest.skip("the row-id form is SQLite's")
    store_records(db, _cdrs(seed))
    day = (parse_pbx_time("2026-05-28 00:00:00"), parse_pbx_time("2026-05-28 23:59:59"))
    queries = [
        CdrQuery(*day, ("1000",)),
        CdrQuery(*day, ("1000", "1001")),  # calls between the two: once each
        CdrQuery(*day, tuple(EXTS)),
        CdrQuery(*day, None, parse_scope("1000-1001,1003")),
    ]
    for query in queries:
        for limit in (None, 7):
            by_ids, by_union = _both_forms(db, query, limit)
            assert by_ids == by_union and by_ids, (query, limit)
            assert len(set(by_ids)) == len(by_ids)
        with db.write() as conn:  # the small download's read, on the driver
            assert read_lines(conn, query) == _both_forms(db, query, None)[1]


@pytest.mark.parametrize("seed", [1, 2])
def test_a_whole_read_answers_the_ordered_lines_or_none_past_its_bound(db: Database, seed: int):
    # A small download's read in its redeem's transaction: all its lines in download order
    # (ties on the second in (callid, sn) order, a call between two listed extensions once),
    # or None when there are more than it may hold (then the download is paged).
    store_records(db, _cdrs(seed))
    day = (parse_pbx_time("2026-05-28 00:00:00"), parse_pbx_time("2026-05-28 23:59:59"))
    for query in [CdrQuery(*day, ("1000",)), CdrQuery(*day, ("1000", "1001")), CdrQuery(*day)]:
        expected = _both_forms(db, query, None)[1]
        with db.write() as conn:
            assert read_whole(conn, query, len(expected)) == expected, query
            assert read_whole(conn, query, len(expected) - 1) is None, query
