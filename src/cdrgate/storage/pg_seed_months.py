"""A seed into an empty PostgreSQL store, its months made on two connections at once.

Why: PostgreSQL runs an ``INSERT ... SELECT`` on one core (no parallel plan for it), and
making the seeded rows is most of a seed's work; a seed on one connection leaves the other
core idle while its rows are made (bench/RESULTS.md, "Issue 17, the PostgreSQL seed on two
cores (nineteenth round)"). So every month gets a table of its own, made empty and committed
first, and ``CONNECTIONS`` connections of their own, one thread each, take the next piece of
work left, each committed: the months' rows, whole months largest first (``making_order``),
then the last months in pieces of about ``PIECE_ROWS`` rows (whole hours, in time order);
the constraints' indexes of a month (``pg_months.build_indexes``), by the connection that
committed its last rows; then each of its plain indexes (``pg_months.plain_indexes``), first
in line for either connection. Both connections end together, within a piece of work of
each other (bench/RESULTS.md, twenty-first round). The seed's own connection counts into
cdr_summary each month whose rows and constraints are in, while its plain indexes are built.

A table committed by another connection is outside the seed's transaction, so the rules of a
seed are kept this way:

- ids: the seed's transaction takes the whole plan's ids from ``cdr``'s sequence first
  (``pg_bulk.reserve_ids``, holding the insert lock to the commit as any writer does); row
  ``seq`` gets id ``first + seq - 1``, in time order, whichever connection makes it;
- nobody sees half a seed: the months' tables are not ``cdr``'s partitions until the seed's
  transaction attaches them all, adds their counts and commits, in one short step at the end
  (``pg_months.attach_counted``; a range CHECK on each table spares the attach its scan);
- a failed or interrupted seed (Ctrl-C and SIGTERM are exceptions here) leaves nothing: the
  helpers are stopped (their statements cancelled), then every table this seed may have made
  is dropped. A client killed outright cannot do that: the tables, named after the seed's
  backend, are dropped by the next seed (``pg_bulk.drop_orphan_tables``).
"""

from __future__ import annotations

import functools
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from cdrgate.seed import SeedPlan, Slot
from cdrgate.storage import partitions, pg_bulk, pg_months, summary
from cdrgate.storage.columns import COLUMNS
from cdrgate.storage.db import Database
from cdrgate.storage.seeded import (
    bind_params,
    rows_sql,
    stage_hours,
    stage_more_hours,
    unstage_hours,
)

# The months are made on this many connections: as many as the cores the row making was
# measured to leave idle (one statement uses one core; a 2-core server).
CONNECTIONS = 2
# The last months in making order, as many as the connections, are made in pieces of about
# ``PIECE_ROWS`` rows (whole hours), which the connections take in turn: the connection that
# ends its last whole month first starts on them, the other joins when it ends its own, and
# both end within a piece of each other, where whole months left one core idle for up to a
# month's rows and indexes. The two pieces made at a time are neighbours in time, so the
# month's table still holds its rows in about time order (ts correlation 0.97-0.997 for
# pieces of 5-10k rows; a month made as two halves at once gave 0.49-0.55). The other months
# stay whole: each piece costs a statement, a commit and a thread's wake-up, 5-20 ms at load
# 7 (bench/RESULTS.md, twenty-first round).
PIECE_ROWS = 5_000
_PREFIX = "cdr_seed_"  # + the seed's backend pid + "_" + yyyymm
_RANGE = "seed_month_range"
_NAMES = ", ".join(COLUMNS)


@dataclass(frozen=True)
class Month:
    start: int
    hours: Sequence[Slot]  # the plan's hours whose rows may fall in this month
    table: str

    @property
    def rows(self) -> int:
        """How many of the plan's rows fall in this month."""
        end = partitions.next_month(self.start)
        return sum(hour.calls for hour in self.hours if self.start <= hour.ts < end)

    def pieces(self, rows: int) -> list[list[Slot]]:
        """The month's hours in runs of consecutive hours, each holding about ``rows`` of the
        plan's rows (the last one fewer)."""
        runs: list[list[Slot]] = [[]]
        size = 0
        for hour in self.hours:
            if size >= rows:
                runs.append([])
                size = 0
            runs[-1].append(hour)
            size += hour.calls
        return runs


@dataclass(frozen=True)
class Piece:
    month: Month
    hours: Sequence[Slot]  # consecutive hours of the month


def plan_months(plan_hours: Sequence[Slot], pid: int) -> list[Month]:
    """The months of ``plan_hours``, their tables named after the seed's backend ``pid``."""
    by_start: dict[int, list[Slot]] = {}
    for hour in plan_hours:
        for start in _months_of(hour):
            by_start.setdefault(start, []).append(hour)
    return [
        Month(start, hours, f"{_PREFIX}{pid}_{partitions.partition_name(start)[len('cdr_p') :]}")
        for start, hours in sorted(by_start.items())
    ]


def making_order(months: Sequence[Month]) -> list[Month]:
    """The order the helpers take ``months`` in: largest first. A month is the grain of the
    work, and the connection that ends first sits idle while the other finishes its last
    month; taking the small months last makes that wait short (in time order the last two
    months of 2026, both of 31 days, ended ~0.6-1 s apart: bench/RESULTS.md, twentieth
    round). Ids do not depend on it: row ``seq`` has its id whichever month is made first."""
    return sorted(months, key=lambda month: month.rows, reverse=True)


def months_are_new(db: Database, hours: Sequence[Slot]) -> bool:
    """Whether none of the months of ``hours`` has a partition (this seed's case: the store
    is empty, so ``cdr_default`` holds none of their rows either)."""
    starts = {month.start for month in plan_months(hours, 0)}
    with db.read() as conn:
        return not starts & set(partitions.existing(conn).values())


def store(
    db: Database,
    plan: SeedPlan,
    hours: Sequence[Slot],
    progress: Callable[[int], None] | None = None,
) -> int:
    """Store the plan's rows (``hours``: all of them), whose months have no partition, into
    an empty ``cdr`` in one write transaction; returns how many were new. The months' tables
    are dropped whatever happens (see the module docstring)."""
    months: list[Month] = []
    try:
        with db.write() as conn:
            pid = int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
            months = plan_months(hours, pid)
            return _store(conn, plan, months, progress)
    except BaseException:
        # The transaction has ended (rolled back): nothing holds the tables any more.
        if months:
            _drop(db.engine, months)
        raise


def _store(
    conn: Connection,
    plan: SeedPlan,
    months: list[Month],
    progress: Callable[[int], None] | None,
) -> int:
    pg_bulk.drop_orphan_tables(conn.engine, _PREFIX)
    _create(conn.engine, months)
    first_id = pg_bulk.reserve_ids(conn, plan.count)
    with _Helpers(conn.engine, plan, months, first_id - 1) as helpers:
        for month in helpers.rows_made():
            # Counted from the month's committed rows while the helpers go on (this
            # connection is idle otherwise), invisible to others until the commit as the
            # month's rows are. The month's plain indexes are built meanwhile: CREATE INDEX
            # lets this transaction read the table, and the last month's count is then no
            # longer alone at the end, after every helper is done.
            _count(conn, month.table)
            if progress is not None:
                progress(month.rows)
    # Every month made, indexed and counted: attached, then the commit.
    months_made = ((month.start, month.table) for month in months)
    return plan.count - pg_months.attach_counted(conn, months_made, _RANGE)


def _create(engine: Engine, months: list[Month]) -> None:
    """Every month's table, empty, with a CHECK of its range (which spares the attach its
    scan), committed on a connection of its own: both helpers make a month's pieces into it,
    each in a transaction of its own.

    Autovacuum off until the attach resets it (``pg_months.attach_counted``), as the
    import's months have it: a committed table of ~80k new rows is past autovacuum's insert
    threshold, and a worker visiting the database mid-seed would VACUUM and ANALYZE each
    month made so far (~0.5 s of CPU a month on a 2-core server the seed keeps busy), and
    hold a lock that a helper's CREATE INDEX or the attach waits behind (for up to
    ``deadlock_timeout`` before the worker is cancelled)."""
    with engine.begin() as other:
        for month in months:
            start, end = month.start, partitions.next_month(month.start)
            other.exec_driver_sql(
                f"CREATE TABLE {month.table} (LIKE cdr INCLUDING DEFAULTS, "
                f"CONSTRAINT {_RANGE} CHECK (ts >= {start} AND ts < {end})) "
                "WITH (autovacuum_enabled = false)"
            )


def _count(conn: Connection, table: str) -> None:
    """Count the rows of ``table`` (a month made by a helper) into cdr_summary: one GROUP BY
    of the table (counted into a table of its own by the helper and added here took ~0.3 s
    more CPU for 1M rows), and a plain INSERT of the counts, ~0.4-0.6 s less CPU for 1M rows
    than the upsert (bench/RESULTS.md, twentieth round). cdr is empty, but cdr_summary may
    hold the month's hours, left at zero by deletes: the INSERT then fails, and under a
    savepoint the upsert runs instead."""
    savepoint = conn.begin_nested()
    try:
        summary.add_table_new(conn, table)
        savepoint.commit()
    except DBAPIError as exc:
        savepoint.rollback()
        if getattr(exc.orig, "sqlstate", None) != pg_months.UNIQUE_VIOLATION:
            raise
        summary.add_table(conn, table)


class _Stopped(Exception):
    """A helper told to stop mid-month (its transaction rolls back)."""


@dataclass(frozen=True)
class IndexBuild:
    month: Month
    statement: str  # the CREATE INDEX of one of the month's plain indexes


class _Helpers:
    """``CONNECTIONS`` threads making ``months``, each taking the next piece of work left:
    a month's rows (whole, in ``making_order``, or a piece of one of the last months), then,
    by the connection that committed its last rows, the month's constraints' indexes; the
    month's plain indexes are then first in line, each a piece of work either connection
    takes. Leaving the ``with`` stops them, their running statements cancelled.

    A month is told of twice on ``done``: when its rows (and the constraints' indexes) are
    committed, and when all its indexes are."""

    def __init__(self, engine: Engine, plan: SeedPlan, months: list[Month], id_base: int):
        self.engine, self.plan, self.id_base = engine, plan, id_base
        self.rows = rows_sql("postgresql", plan, numbered=True)
        self.todo: deque[Piece | IndexBuild] = deque()
        # Month table -> its pieces, then its plain index builds, not committed yet.
        self.left: dict[str, int] = {}
        order = making_order(months)
        for nth, month in enumerate(order):
            split = nth >= len(order) - CONNECTIONS
            runs = month.pieces(PIECE_ROWS) if split else [list(month.hours)]
            self.left[month.table] = len(runs)
            self.todo.extend(Piece(month, hours) for hours in runs)
        self.total = len(months)
        self.making = 0  # how many helpers are working now
        # (month, whether all its indexes are built), or a helper's error.
        self.done: queue.SimpleQueue[tuple[Month, bool] | BaseException] = queue.SimpleQueue()
        self.stop = threading.Event()
        self.running: list[Any] = []  # the helpers' driver connections, while they run
        # Guards ``running`` against the cancel at the end, ``todo``, ``left`` and ``making``.
        self.lock = threading.Lock()
        # Told when work is added, a helper's work ends, or the helpers must stop: a helper
        # with nothing to take waits while the other works (its month's index builds will
        # be added to ``todo``), and ends only when both have nothing left.
        self.changed = threading.Condition(self.lock)
        self.threads = [
            threading.Thread(target=self._run, name=f"cdrgate-seed-{i}")
            for i in range(min(CONNECTIONS, len(self.todo)))
        ]

    def __enter__(self) -> _Helpers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        with self.lock:
            self.changed.notify_all()
            for driver in self.running:
                driver.cancel_safe()
        for thread in self.threads:
            thread.join()

    def rows_made(self) -> Iterator[Month]:
        """Each month as its rows are committed; ends once every month is made, all its
        indexes built too. A helper's error is raised here."""
        for _ in range(2 * self.total):
            item = self.done.get()
            if isinstance(item, BaseException):
                raise item
            month, indexed = item
            if not indexed:
                yield month

    def _run(self) -> None:
        try:
            with self.engine.connect() as conn:
                driver = conn.connection.driver_connection
                with self.lock:
                    if self.stop.is_set():
                        # Told to stop before starting: nothing made, nothing to say on
                        # ``done``. Only ``__exit__`` sets ``stop``, and the seed leaves the
                        # ``with`` only after ``rows_made()`` ended (every month heard of) or
                        # raised (no one reads ``done`` any more): no one waits for a word
                        # from this thread.
                        return
                    self.running.append(driver)
                try:
                    self._work(conn)
                finally:
                    with self.lock:  # back to the pool: no one may cancel its statements now
                        self.running.remove(driver)
        except BaseException as exc:  # the seed waits on ``done``: it must hear of it
            self.done.put(exc)

    def _work(self, conn: Connection) -> None:
        staged: set[int] = set()  # the months whose hours this connection has staged
        try:
            while True:
                with self.lock:
                    self.changed.wait_for(
                        lambda: self.todo or not self.making or self.stop.is_set()
                    )
                    if self.stop.is_set() or not self.todo:
                        break
                    work = self.todo.popleft()
                    self.making += 1
                try:
                    if isinstance(work, Piece):
                        self._make(conn, work, staged)
                    else:
                        self._build(conn, work)
                finally:
                    with self.lock:
                        self.making -= 1
                        self.changed.notify_all()
        except BaseException:
            # The staged hours are a temporary table of the session: a connection that
            # failed mid-way is closed rather than handed back to the pool with it.
            conn.invalidate()
            raise
        if staged:
            with conn.begin():
                unstage_hours(conn)

    def _alone(self) -> bool:
        """Whether no other helper is working now, nor will: the other core is free."""
        with self.lock:
            return self.making == 1 and not self.todo

    def _go_on(self) -> None:
        """Between two statements: a cancel may arrive between them, so stop is asked too."""
        if self.stop.is_set():
            raise _Stopped

    def _make(self, conn: Connection, piece: Piece, staged: set[int]) -> None:
        """``piece``'s rows, committed; then, when they were its month's last, the month's
        constraints' indexes."""
        month = piece.month
        start, end = month.start, partitions.next_month(month.start)
        with conn.begin():
            # Each connection stages a month's hours (a few hundred) when it first meets the
            # month; an hour crossing into the next month is staged once.
            if not staged:
                stage_hours(conn, month.hours)
            elif month.start not in staged:
                new = [hour for hour in month.hours if not _months_of(hour) & staged]
                if new:
                    stage_more_hours(conn, new)
            params = bind_params(self.plan, piece.hours[0].first_seq, piece.hours[-1].first_seq)
            conn.execute(
                text(
                    f"INSERT INTO {month.table} (id, {_NAMES}) "
                    f"SELECT {self.id_base} + seq, {_NAMES} "
                    f"FROM ({self.rows}) AS seeded "
                    f"WHERE ts >= {start} AND ts < {end}"
                ),
                params,
            )
            self._go_on()
        staged.add(month.start)  # committed: the staged hours stay with the session
        if self._committed(month):
            self._constraints(conn, month)

    def _constraints(self, conn: Connection, month: Month) -> None:
        """``month``'s constraints' indexes, committed (told of on ``done``: the seed counts
        the month meanwhile); then its plain indexes first in line. The constraints come
        first: ALTER TABLE ... ADD takes ACCESS EXCLUSIVE, which the seed's lock on a table
        it counted (held to its commit) would block; CREATE INDEX does not."""
        with conn.begin():
            self._settings(conn)
            pg_months.build_indexes(conn, month.table, plain=False)
            self._go_on()
        self.done.put((month, False))
        with conn.begin():
            builds = [IndexBuild(month, sql) for sql in pg_months.plain_indexes(conn, month.table)]
        with self.lock:
            self.left[month.table] = len(builds)
            # First in line: the month's pages are still in the server's cache, and the other
            # helper, when free, takes one too, so that at the end both finish together.
            self.todo.extendleft(reversed(builds))
            self.changed.notify_all()
        if not builds:
            self.done.put((month, True))

    def _build(self, conn: Connection, build: IndexBuild) -> None:
        """One of a month's plain indexes, committed; all of them told of on ``done``."""
        with conn.begin():
            self._settings(conn)
            conn.exec_driver_sql(build.statement)
            self._go_on()
        if self._committed(build.month):
            self.done.put((build.month, True))

    def _committed(self, month: Month) -> bool:
        """One more piece of ``month``'s work committed: whether it was the last left."""
        with self.lock:
            self.left[month.table] -= 1
            return self.left[month.table] == 0

    def _settings(self, conn: Connection) -> None:
        """For this transaction's index builds: room to sort in memory, and parallel workers
        only when this helper is alone (the last index): while both helpers work, both cores
        are busy, and the workers' start and merge cost ~30 % more CPU for the same builds
        (bench/RESULTS.md, twentieth round). Otherwise the server's own setting."""
        conn.exec_driver_sql(f"SET LOCAL maintenance_work_mem = '{pg_months.INDEX_MEMORY}'")
        workers = "DEFAULT" if self._alone() else "0"
        conn.exec_driver_sql(f"SET LOCAL max_parallel_maintenance_workers = {workers}")


def _months_of(hour: Slot) -> set[int]:
    """The months ``hour`` belongs to: those of its first and last second. An hour whose rows
    cross into the next month is made by both months (each keeps its own rows)."""
    return {_month_of_day(hour.ts // 86400), _month_of_day((hour.ts + 3599) // 86400)}


@functools.cache
def _month_of_day(day: int) -> int:
    """The month of day ``day`` (days since 1970-01-01): a month is whole days, so the month
    of each of a day's seconds. Asked for every hour of the plan, three times before the
    helpers' first rows (8,760 hours a year; ``month_start`` ~2 us a call, in pure Python)."""
    return partitions.month_start(day * 86400)


def _drop(engine: Engine, months: list[Month]) -> None:
    """Drop every table the seed may have made (after its transaction ended)."""
    names = ", ".join(month.table for month in months)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {names}")
