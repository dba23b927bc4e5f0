"""Time arguments and the splitting of a long range into download windows.

Bounds are inclusive and whole seconds (as the PBX filters ``timestart``), so consecutive
windows ``[a, b]``, ``[b + 1, c]`` cover every second exactly once: no gap, no overlap.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cdrgate.timefmt import from_datetime, parse_pbx_time

TimeArg = datetime | str
DEFAULT_WINDOW = timedelta(days=1)
# How far before its mark a sync reads again (services/sync.py; `cdrgate sync`'s default).
DEFAULT_OVERLAP = timedelta(hours=2)


def to_seconds(value: TimeArg) -> int:
    """A datetime (PBX wall-clock) or ``yyyy-mm-dd hh:mm:ss`` text as wall-clock seconds."""
    if isinstance(value, datetime):
        return from_datetime(value)
    return parse_pbx_time(value)


def split(start: int, end: int, window: timedelta) -> list[tuple[int, int]]:
    """Inclusive ``(start, end)`` windows covering ``[start, end]`` in order."""
    step = int(window.total_seconds())
    if step < 1:
        raise ValueError("the download window must be at least one second")
    if start > end:
        raise ValueError("the start of the range is after its end")
    return [(low, min(low + step - 1, end)) for low in range(start, end + 1, step)]
