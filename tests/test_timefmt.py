from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdrgate.timefmt import format_pbx_time, from_datetime, parse_pbx_time, to_datetime


def test_parse_and_format_are_inverse_on_a_known_value():
    assert parse_pbx_time("2020-05-12 17:05:28") == 1589303128
    assert format_pbx_time(1589303128) == "2020-05-12 17:05:28"


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31)))
def test_round_trip_for_any_wall_clock_time(moment):
    moment = moment.replace(microsecond=0)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    seconds = parse_pbx_time(text)
    assert format_pbx_time(seconds) == text
    assert to_datetime(seconds) == moment and from_datetime(moment) == seconds


@pytest.mark.parametrize(
    "bad",
    [
        "2021-02-29 00:00:00", "2020-04-31 10:00:00", "", " ", "1e9", "2026-13-01 00:00:00",
        "0000-01-01 00:00:00", "2026-01-01 24:00:00", "2026-01-01 23:60:00", "2026-01-01 23:59:60",
    ],
)  # fmt: skip
def test_impossible_times_are_rejected(bad):
    with pytest.raises(ValueError):
        parse_pbx_time(bad)


def test_a_time_on_a_day_seen_before_is_still_checked_for_its_time_of_day():
    # The date part is cached; the time of day must be validated on every call.
    assert parse_pbx_time("2026-03-01 23:59:59") - parse_pbx_time("2026-03-01 00:00:00") == 86399
    with pytest.raises(ValueError):
        parse_pbx_time("2026-03-01 24:00:00")
