"""An API item shows a CDR's time exactly as the device's CSV does, whatever the second."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cdrgate.services.query import item
from cdrgate.timefmt import format_pbx_time, parse_pbx_time

FIRST = parse_pbx_time("0001-01-01 00:00:00")
LAST = parse_pbx_time("9999-12-31 23:59:59")


@given(ts=st.integers(FIRST, LAST))
def test_an_items_timestart_is_the_pbx_time_of_its_ts(ts: int):
    row = (7, "1780000000.1", ts, "1000", "1001", 5, 3, "", "", "ANSWERED", "Internal",
           "", "", "", "369392534749", ts, 7)  # fmt: skip
    shown = item(row)
    assert shown["timestart"] == format_pbx_time(ts)
    assert list(shown)[:3] == ["id", "callid", "timestart"] and shown["id"] == 7
    assert len(shown) == 15
