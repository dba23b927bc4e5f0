"""The monthly partition a small download's day is read from on the event loop (PostgreSQL).

Why: the small download's one statement (``storage/session_spend.py``, and
``storage/session_day.py``'s on the loop) read its day from ``cdr``. Its cached generic plan
then locks every partition of ``cdr`` at each execution's revalidation and prunes them at run
time: ~0.3 us a partition a statement, so a store of years paid more a download than a store
of months, and reading the month's table instead was 7-17 us less of the server's CPU a
download (bench/RESULTS.md, twenty-third round, second part; twenty-fourth round). So when
the day's range lies inside one calendar month (wall-clock seconds, as ``partitions``
divides them) whose partition this process knows, the statement reads ``cdr_pYYYYMM`` (named
``cdr`` inside it, so the rest of the statement is the same); otherwise ``cdr``, as before.

Why that reads the same rows: every path that makes a month's table visible to others makes
it ``cdr``'s partition of that month in the same transaction (``partitions.create_month``:
created, the default partition's rows of the month moved into it, attached;
``pg_months.attach``: renamed to the month's name and attached), and while it is attached
PostgreSQL keeps that month's rows in it alone (``cdr_default``'s implicit constraint). So a
table of that name, if it exists, holds exactly ``cdr``'s rows of that month. The name is
built only by ``partitions.partition_name`` from the query's range and used only if the
catalog listed it (``partitions.is_month_name``); never from the request's text.

How this process learns of other processes' changes (an import or a seed attaching months,
retention dropping them, while asyncpg holds statements prepared naming them):

- a month attached elsewhere: the list of ``cdr``'s partitions is read again (one short
  catalog read on the loop) when it is older than ``REFRESH_S``; until then the month's day
  is read from ``cdr``: right, only slower;
- a month dropped elsewhere: the statement naming it fails before it runs (PostgreSQL
  re-plans a prepared statement whose table was dropped, and finds no table of that name:
  ``undefined_table``); nothing of it ran, its writes included (one statement, autocommit),
  so it is run again reading ``cdr``, and the list is read again by the next download. A
  month dropped and made again under the same name is found again by name when PostgreSQL
  re-plans (a prepared statement keeps the text, not the table).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import column, func, select, table

from cdrgate.storage import partitions
from cdrgate.storage.driver import PostgresStatement
from cdrgate.storage.tables import cdr

if TYPE_CHECKING:
    from cdrgate.storage.cdrs import CdrQuery
    from cdrgate.storage.pg_loop import LoopStatements

# The list of partitions is read again after this long: how long a month attached by another
# process is read through ``cdr`` (right, a little slower) before this one names it.
REFRESH_S = 30.0
UNDEFINED_TABLE = "42P01"


def month_of(query: CdrQuery) -> str | None:
    """The name of the monthly partition ``query``'s whole range lies in; None when the range
    crosses a month's end (or is no range of real times)."""
    month = _month(query.start_ts)
    if month is None or not query.start_ts <= query.end_ts < month[1]:
        return None
    return month[0]


@lru_cache(maxsize=1024)
def _month(ts: int) -> tuple[str, int] | None:
    """The partition's name of the month of ``ts`` and the next month's first second. Cached
    (a download's start is a day's, and days repeat): gmtime and strftime cost ~13 us a call
    on the bench's loaded server, as much as half of what reading the month saves."""
    try:
        start = partitions.month_start(ts)
        return partitions.partition_name(start), partitions.next_month(start)
    except (OverflowError, OSError, ValueError):  # beyond what gmtime takes
        return None


@lru_cache(maxsize=256)
def month_table(name: str) -> Any:
    """The month's partition ``name`` with ``cdr``'s columns, named ``cdr`` in a statement."""
    assert partitions.is_month_name(name), "a monthly partition's name"
    return table(name, *(column(c.key, c.type) for c in cdr.c)).alias("cdr")


class DayMonths:
    """A process's list of ``cdr``'s monthly partitions, for the loop's statements."""

    def __init__(self) -> None:
        self._names: frozenset[str] = frozenset()
        self._read_at = -math.inf  # time.monotonic() of the last read; never read yet
        self._reading = False

    async def row(
        self,
        statements: LoopStatements,
        query: CdrQuery,
        statement_of: Callable[[str | None], PostgresStatement],
        params: Mapping[str, Any],
        *,
        writes: bool = False,
    ) -> Sequence[Any] | None:
        """``statements.row`` of ``statement_of(month)``: ``month`` the partition ``query``'s
        range lies in, when this process knows it, else None (``cdr``). A statement that
        names a month dropped meanwhile fails before it runs: it is run again on ``cdr``."""
        month = month_of(query)
        # One read of the list at a time: meanwhile the others go by the list as it was (a
        # month it lacks is read from ``cdr``; one it has that is gone is run again on ``cdr``).
        if (
            month is not None
            and not self._reading
            and self._read_at <= time.monotonic() - REFRESH_S
        ):
            await self._read(statements)
        if month not in self._names:
            return await statements.row(statement_of(None), params, writes=writes)
        try:
            return await statements.row(statement_of(month), params, writes=writes)
        except Exception as exc:
            if getattr(exc, "sqlstate", None) != UNDEFINED_TABLE:
                raise
            self.gone(month)
        return await statements.row(statement_of(None), params, writes=writes)

    def gone(self, name: str) -> None:
        """``name`` was not found: not named again, and the list is read again next time."""
        self._names -= {name}
        self._read_at = -math.inf

    async def _read(self, statements: LoopStatements) -> None:
        self._reading = True
        try:
            row = await statements.row(_partitions_statement(), {})
        finally:
            self._reading = False
        names = row[0] if row is not None and row[0] is not None else []
        self._names = frozenset(n for n in names if partitions.is_month_name(n))
        self._read_at = time.monotonic()


@lru_cache(maxsize=1)
def _partitions_statement() -> PostgresStatement:
    """``cdr``'s partitions' names (``partitions.names``), as one array: one row."""
    listed = partitions.names().subquery()
    return PostgresStatement.of(select(func.array_agg(listed.c.name)))
