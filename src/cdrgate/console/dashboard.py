"""The dashboard's figures, all from the query service's ``/v1/stats`` groups.

"Today" is a day of PBX local time: the stored times have no zone, so the day is the one the
server's own clock reads (the server is expected to run in the PBX's zone), or the ``day``
the URL names, which makes any past day's dashboard a link.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from cdrgate.errors import BadParameter
from cdrgate.services.query import QueryRequest, StatGroup

TOP_EXTENSIONS = 10
DAYS_SHOWN = 14

Stats = Callable[[QueryRequest], list[StatGroup]]


@dataclass(frozen=True)
class Totals:
    calls: int
    answered: int
    talk_seconds: int

    @property
    def answer_rate(self) -> str:
        return f"{100 * self.answered / self.calls:.0f} %" if self.calls else "-"

    @property
    def talk_time(self) -> str:
        hours, rest = divmod(self.talk_seconds, 3600)
        return f"{hours} h {rest // 60:02d} min"


@dataclass(frozen=True)
class Bar:
    label: str
    calls: int
    answered: int

    @property
    def other(self) -> int:
        return self.calls - self.answered


@dataclass(frozen=True)
class Chart:
    title: str
    bars: list[Bar]

    @property
    def peak(self) -> int:
        return max((bar.calls for bar in self.bars), default=0) or 1


@dataclass(frozen=True)
class Dashboard:
    day: date
    week_start: date
    today: Totals
    week: Totals
    by_status: list[StatGroup]
    hours: Chart
    days: Chart
    extensions: list[StatGroup]

    @property
    def week_filter(self) -> dict[str, str]:
        """The calls page's time filters for this week so far (links from the tables)."""
        until = self.day + timedelta(days=1)
        return {"from": f"{self.week_start} 00:00:00", "until": f"{until} 00:00:00"}


def parse_day(text: str | None, now: datetime) -> date:
    if not text or not text.strip():
        return now.date()
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise BadParameter("day", "not a YYYY-MM-DD date") from None
    # The dashboard reads the DAYS_SHOWN days up to it, its week, and the day after it (the
    # exclusive end): a day whose span leaves the calendar was a 500 (OverflowError).
    first, last = date.min + timedelta(days=max(DAYS_SHOWN - 1, 6)), date.max - timedelta(days=1)
    if not first <= day <= last:
        raise BadParameter("day", f"not a day from {first} to {last}")
    return day


def _totals(groups: Sequence[StatGroup]) -> Totals:
    return Totals(
        sum(g.calls for g in groups),
        sum(g.answered for g in groups),
        sum(g.talk_seconds for g in groups),
    )


def _span(first: date, last: date) -> tuple[tuple[str, str], tuple[str, str]]:
    """[first 00:00, the day after last 00:00): ``until`` is exclusive in the query API."""
    return ("from", f"{first} 00:00:00"), ("until", f"{last + timedelta(days=1)} 00:00:00")


def build(stats: Stats, token: str | None, day: date) -> Dashboard:
    def ask(group: str, first: date, last: date) -> list[StatGroup]:
        return stats(QueryRequest(token, (*_span(first, last), ("group", group))))

    week_start = day - timedelta(days=day.weekday())
    today_status = ask("status", day, day)
    week_status = ask("status", week_start, day)
    per_hour = {g.key[11:13]: g for g in ask("hour", day, day)}
    first_day = day - timedelta(days=DAYS_SHOWN - 1)
    per_day = {g.key: g for g in ask("day", first_day, day)}
    extensions = sorted(ask("extension", week_start, day), key=lambda g: (-g.calls, g.key))
    hours = [
        Bar(f"{h:02d}", per_hour[f"{h:02d}"].calls, per_hour[f"{h:02d}"].answered)
        if f"{h:02d}" in per_hour
        else Bar(f"{h:02d}", 0, 0)
        for h in range(24)
    ]
    days = []
    for offset in range(DAYS_SHOWN):
        key = str(first_day + timedelta(days=offset))
        group = per_day.get(key)
        days.append(Bar(key[5:], group.calls if group else 0, group.answered if group else 0))
    return Dashboard(
        day=day,
        week_start=week_start,
        today=_totals(today_status),
        week=_totals(week_status),
        by_status=sorted(week_status, key=lambda g: -g.calls),
        hours=Chart(f"Calls per hour on {day}", hours),
        days=Chart(f"Calls per day, {first_day} to {day}", days),
        extensions=extensions[:TOP_EXTENSIONS],
    )
