"""The PBX time format, ``yyyy-mm-dd hh:mm:ss``, in PBX local wall-clock time.

Times have no zone on the wire. cdrgate stores them as *wall-clock seconds*: the number of
seconds from 1970-01-01 00:00:00 to the wall-clock reading, computed as if it were UTC. That
keeps ordering and range filters exact and index friendly, with no time-zone guesswork.
"""

from __future__ import annotations

import calendar
import re
import time
from datetime import UTC, datetime
from datetime import date as date_type
from functools import lru_cache

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# ASCII only: \d alone also matches other scripts' digits, which int() would accept.
_TIME_RE = re.compile(r"(\d{4}-\d{2}-\d{2}) (\d{2}):(\d{2}):(\d{2})", re.ASCII)


def parse_pbx_time(text: str) -> int:
    """Parse ``yyyy-mm-dd hh:mm:ss`` into wall-clock seconds; ValueError if not a real time."""
    match = _TIME_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a yyyy-mm-dd hh:mm:ss time: {text!r}")
    date, hour, minute, second = match.group(1, 2, 3, 4)
    hh, mm, ss = int(hour), int(minute), int(second)
    if hh > 23 or mm > 59 or ss > 59:
        raise ValueError(f"not a real time of day: {text!r}")
    return _day_seconds(date) + hh * 3600 + mm * 60 + ss


@lru_cache(maxsize=4096)
def _day_seconds(date: str) -> int:
    """Wall-clock seconds at the start of ``yyyy-mm-dd``. Cached: an import parses a time per
    row, and a file's rows fall on few days (this was most of the parsing cost)."""
    year, month, day = int(date[:4]), int(date[5:7]), int(date[8:])
    try:
        return calendar.timegm(date_type(year, month, day).timetuple())
    except ValueError:  # month 13, Feb 30, year 0
        raise ValueError(f"not a real date: {date!r}") from None


def format_pbx_time(seconds: int) -> str:
    """Render wall-clock seconds as ``yyyy-mm-dd hh:mm:ss``."""
    t = time.gmtime(seconds)
    # Not strftime: its %Y does not zero-pad years before 1000 on glibc.
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    )


def to_datetime(seconds: int) -> datetime:
    """Wall-clock seconds as a naive datetime (the PBX's local time, zone unknown)."""
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


def from_datetime(value: datetime) -> int:
    """A naive (wall-clock) datetime as wall-clock seconds; aware values keep their wall time."""
    return calendar.timegm(value.replace(tzinfo=None).timetuple())
