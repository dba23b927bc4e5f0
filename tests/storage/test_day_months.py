"""The month a small download's day is read from (storage/day_months.py): a range inside one
month names that month's partition when the process knows it, any other reads ``cdr``; a
statement naming a month gone is run again on ``cdr`` and the list read again; the list is
read again once it is ``REFRESH_S`` old. On a stand-in for the loop's statements: the
PostgreSQL side is tests/postgres/test_day_months.py."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from cdrgate.storage import day_months
from cdrgate.storage.cdrs import CdrQuery
from cdrgate.timefmt import parse_pbx_time

MAY_28 = CdrQuery(
    parse_pbx_time("2026-05-28 00:00:00"), parse_pbx_time("2026-05-28 23:59:59"), ("1000",)
)


def _range(start: str, end: str) -> CdrQuery:
    return CdrQuery(parse_pbx_time(start), parse_pbx_time(end), ("1000",))


@pytest.mark.parametrize(
    ("start", "end", "month"),
    [
        ("2026-05-28 00:00:00", "2026-05-28 23:59:59", "cdr_p202605"),
        ("2026-05-01 00:00:00", "2026-05-31 23:59:59", "cdr_p202605"),  # the whole month
        ("2026-12-31 00:00:00", "2026-12-31 23:59:59", "cdr_p202612"),
        ("2026-05-31 12:00:00", "2026-06-01 11:59:59", None),  # across a month's end
        ("2026-05-31 00:00:00", "2026-06-01 00:00:00", None),  # its last second is June's
        ("2026-12-31 12:00:00", "2027-01-01 11:59:59", None),  # across a year's end
        ("2026-05-28 23:59:59", "2026-05-28 00:00:00", None),  # no range
    ],
)
def test_a_range_inside_one_month_is_that_months(start, end, month):
    assert day_months.month_of(_range(start, end)) == month


@pytest.mark.parametrize("ts", [-(10**15), 10**15])
def test_a_time_beyond_the_calendar_is_no_month(ts):
    assert day_months.month_of(CdrQuery(ts, ts, ("1000",))) is None


class _Gone(Exception):
    sqlstate = day_months.UNDEFINED_TABLE


class _Statements:
    """The loop's statements: the partitions' list, and each statement's month as it ran."""

    def __init__(self, months: list[str] | None, gone: set[str] | None = None) -> None:
        self.months = months
        self.gone = gone or set()
        self.ran: list[str | None] = []  # "list" for a read of the partitions

    async def row(
        self, statement: Any, params: Mapping[str, Any], *, writes: bool = False
    ) -> Sequence[Any] | None:
        if statement is day_months._partitions_statement():
            self.ran.append("list")
            return (self.months,)
        month = statement
        self.ran.append(month)
        if month in self.gone:
            raise _Gone(f'relation "{month}" does not exist')
        return (month,)


def _row(months: day_months.DayMonths, statements: _Statements, query: CdrQuery) -> Any:
    # ``statement_of`` hands back the month itself: the stand-in runs it as its name.
    return asyncio.run(months.row(statements, query, lambda month: month, {}, writes=True))  # type: ignore[arg-type,return-value]


def test_a_known_month_is_named_and_an_unknown_or_crossed_one_reads_cdr():
    months = day_months.DayMonths()
    statements = _Statements(["cdr_p202604", "cdr_p202605", "cdr_default"])
    assert _row(months, statements, MAY_28) == ("cdr_p202605",)
    june = _range("2026-06-02 00:00:00", "2026-06-02 23:59:59")
    assert _row(months, statements, june) == (None,)  # no partition: its rows in cdr_default
    across = _range("2026-04-30 12:00:00", "2026-05-01 11:59:59")
    assert _row(months, statements, across) == (None,)
    assert statements.ran == ["list", "cdr_p202605", None, None]  # the list read once


def test_the_list_is_read_again_once_it_is_old(monkeypatch):
    months = day_months.DayMonths()
    statements = _Statements([])
    assert _row(months, statements, MAY_28) == (None,)
    statements.months = ["cdr_p202605"]  # attached by another process
    assert _row(months, statements, MAY_28) == (None,)  # not known yet: read from cdr
    monkeypatch.setattr(day_months, "REFRESH_S", 0.0)
    assert _row(months, statements, MAY_28) == ("cdr_p202605",)
    assert statements.ran == ["list", None, None, "list", "cdr_p202605"]


def test_a_month_gone_is_run_again_on_cdr_and_the_list_read_again():
    months = day_months.DayMonths()
    statements = _Statements(["cdr_p202605"])
    assert _row(months, statements, MAY_28) == ("cdr_p202605",)
    statements.months, statements.gone = [], {"cdr_p202605"}  # dropped by another process
    assert _row(months, statements, MAY_28) == (None,)
    assert _row(months, statements, MAY_28) == (None,)
    assert statements.ran == ["list", "cdr_p202605", "cdr_p202605", None, "list", None]


def test_another_error_of_a_month_is_raised_as_it_is():
    class _Other(Exception):
        sqlstate = "42703"

    class _Failing(_Statements):
        async def row(self, statement: Any, params: Any, *, writes: bool = False) -> Any:
            if statement == "cdr_p202605":
                self.ran.append(statement)
                raise _Other("no such column")
            return await super().row(statement, params, writes=writes)

    statements = _Failing(["cdr_p202605"])
    with pytest.raises(_Other):
        _row(day_months.DayMonths(), statements, MAY_28)
    assert statements.ran == ["list", "cdr_p202605"]  # not run again on cdr
