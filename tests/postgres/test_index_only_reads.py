"""PostgreSQL: after ``cdrgate import`` a small download's day read is two index-only scans
that visit no table page (migration 0017's covering indexes, the months the import wrote
vacuumed: storage/visible.py); the seed's case is tests/storage/test_query_plans.py."""

from __future__ import annotations

import io
import random

from cdrgate.cdr import CSV_HEADER
from cdrgate.ingest.files import import_file
from cdrgate.ingest.formats import Format
from cdrgate.ingest.profile import SourceProfile
from cdrgate.storage.db import Database
from cdrgate.timefmt import parse_pbx_time
from tests.conftest import make_cdr
from tests.day_read_plan import day_read_scans

EXTENSIONS = [str(1000 + n) for n in range(50)]
DAY = "2026-03-10"


def _month_of_calls(rows: int) -> bytes:
    """A Yeastar CSV of ``rows`` calls over March 2026 between the extensions."""
    rng = random.Random(27)
    lines = [CSV_HEADER]
    for n in range(rows):
        day, second = 1 + rng.randrange(31), rng.randrange(86400)
        timestart = (
            f"2026-03-{day:02d} {second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
        )
        caller, callee = rng.sample(EXTENSIONS, 2)
        record = make_cdr(callid=f"{n}.1", timestart=timestart, callfrom=caller, callto=callee)
        lines.append(record.csv_line())
    return "".join(lines).encode()


def test_after_an_import_the_day_read_visits_no_table_page(pg_db: Database):
    stream = io.BytesIO(_month_of_calls(40_000))
    result = import_file(
        pg_db, "calls.csv", stream, Format.yeastar, SourceProfile("yeastar"), print
    )
    assert result.inserted == 40_000
    day = parse_pbx_time(f"{DAY} 00:00:00")
    scans = day_read_scans(pg_db, ["1007", "1008"], day, day + 86_399)
    assert {n["Relation Name"] for n in scans} == {"cdr_p202603"}, scans
    assert [n["Node Type"] for n in scans] == ["Index Only Scan"] * 2, scans
    assert sum(n["Actual Rows"] for n in scans) > 0, scans
    assert [n["Heap Fetches"] for n in scans] == [0, 0], scans
