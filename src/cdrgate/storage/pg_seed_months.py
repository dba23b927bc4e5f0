"""A seed into an empty PostgreSQL store, its months made on two connections at once.

Why: PostgreSQL runs an ``INSERT ... SELECT`` on one core (no parallel plan for it), and
making the seeded rows is most of a seed's work; a seed on one connection leaves the other
core idle while its rows are made (bench/RESULTS.md, "Issue 17, the PostgreSQL seed on two
cores (nineteenth round)"). So ``CONNECTIONS`` connections of their own, one thread each,
take the plan's months in turn, largest first (``making_order``): each makes its month's rows
into a table of its own with the constraints' indexes (``pg_months.build_indexes``) and
commits, then builds the month's other indexes and commits again. While one builds a month's
indexes the other makes the next month's rows, and the seed's own connection counts into
cdr_summary each month whose rows are in, while its plain indexes are built.

A table committed by another connection is outside the seed's transaction, so the rules of a
seed are kept this way:

- ids: the seed's transaction takes the whole plan's ids from ``cdr``'s sequence first
  (``pg_bulk.reserve_ids``, holding the insert lock to the commit as any writer does); row
  ``seq`` gets id ``first + seq - 1``, in time order, whichever connection makes it;
- nobody sees half a seed: the months' tables are not ``cdr``'s partitions until the seed's
  transaction attaches them all, adds their counts and commits, in one short step at the end
  (``pg_months.attach``; a range CHECK on each table spares the attach its scan);
- a failed or interrupted seed (Ctrl-C and SIGTERM are exceptions here) leaves nothing: the
  helpers are stopped (their statements cancelled), then every table this seed may have made
  is dropped. A client killed outright cannot do that: the tables, named after the seed's
  backend, are dropped by the next seed (``pg_bulk.drop_orphan_tables``).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from cdrgate.seed import SeedPlan, Slot
from cdrgate.storage import partitions, pg_bulk, pg_months, summary
from cdrgate.storage.columns import COLUMNS
from cdrgate.storage.db import Database
from cdrgate.storage.seeded import bind_params, rows_sql, stage_hours, unstage_hours

# The months are made on this many connections: as many as the cores the row making was
# measured to leave idle (one statement uses one core; a 2-core server).
CONNECTIONS = 2
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


def plan_months(plan_hours: Sequence[Slot], pid: int) -> list[Month]:
    """The months of ``plan_hours``, their tables named after the seed's backend ``pid``."""
    by_start: dict[int, list[Slot]] = {}
    for hour in plan_hours:
        # An hour whose rows cross into the next month is made by both months (each keeps
        # its own rows).
        for start in {partitions.month_start(hour.ts), partitions.month_start(hour.ts + 3599)}:
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
    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%(key)s)", {"key": partitions.DDL_LOCK_KEY})
    skipped = 0
    for month in months:
        if pg_months.attach(conn, month.start, month.table):
            name = partitions.partition_name(month.start)
            conn.exec_driver_sql(f"ALTER TABLE {name} DROP CONSTRAINT {_RANGE}")
        else:  # another connection made the month meanwhile: its rows inserted instead
            summary.subtract_table(conn, month.table)  # counted above: uncounted first
            skipped += pg_months.insert(conn, month.start, month.table)
    return plan.count - skipped


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


class _Helpers:
    """``CONNECTIONS`` threads making ``months`` (in ``making_order``, each taking the next
    one left); leaving the ``with`` stops them, their running statements cancelled.

    A month is told of twice on ``done``: when its rows (and the constraints' indexes) are
    committed, and when all its indexes are."""

    def __init__(self, engine: Engine, plan: SeedPlan, months: list[Month], id_base: int):
        self.engine, self.plan, self.id_base = engine, plan, id_base
        self.todo: queue.SimpleQueue[Month] = queue.SimpleQueue()
        for month in making_order(months):
            self.todo.put(month)
        self.total = len(months)
        self.making = 0  # how many helpers are making a month now (guarded by ``lock``)
        # (month, whether all its indexes are built), or a helper's error.
        self.done: queue.SimpleQueue[tuple[Month, bool] | BaseException] = queue.SimpleQueue()
        self.stop = threading.Event()
        self.running: list[Any] = []  # the helpers' driver connections, while they run
        # Guards ``running`` against the cancel at the end, and ``making``.
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._run, name=f"cdrgate-seed-{i}")
            for i in range(min(CONNECTIONS, len(months)))
        ]

    def __enter__(self) -> _Helpers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        with self.lock:
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
                    self._make_months(conn)
                finally:
                    with self.lock:  # back to the pool: no one may cancel its statements now
                        self.running.remove(driver)
        except BaseException as exc:  # the seed waits on ``done``: it must hear of it
            self.done.put(exc)

    def _make_months(self, conn: Connection) -> None:
        while not self.stop.is_set():
            with self.lock:
                try:
                    month = self.todo.get_nowait()
                except queue.Empty:
                    return
                self.making += 1
            try:
                self._make(conn, month)
            finally:
                with self.lock:
                    self.making -= 1

    def _alone(self) -> bool:
        """Whether no other helper is making a month now, nor will: the other core is free."""
        with self.lock:
            return self.making == 1 and self.todo.empty()

    def _go_on(self) -> None:
        """Between two statements: a cancel may arrive between them, so stop is asked too."""
        if self.stop.is_set():
            raise _Stopped

    def _make(self, conn: Connection, month: Month) -> None:
        """``month``'s table: its rows and the constraints' indexes, committed, then its
        other indexes, committed (each told of on ``done``). The constraints come first: ALTER
        TABLE ... ADD takes ACCESS EXCLUSIVE, which the seed's lock on a table it counted
        (held to its commit) would block."""
        start, end = month.start, partitions.next_month(month.start)
        with conn.begin():
            conn.exec_driver_sql(
                f"CREATE TABLE {month.table} (LIKE cdr INCLUDING DEFAULTS, "
                f"CONSTRAINT {_RANGE} CHECK (ts >= {start} AND ts < {end}))"
            )
            stage_hours(conn, month.hours)
            params = bind_params(self.plan, month.hours[0].first_seq, month.hours[-1].first_seq)
            conn.execute(
                text(
                    f"INSERT INTO {month.table} (id, {_NAMES}) "
                    f"SELECT {self.id_base} + seq, {_NAMES} "
                    f"FROM ({rows_sql('postgresql', self.plan, numbered=True)}) AS seeded "
                    f"WHERE ts >= {start} AND ts < {end}"
                ),
                params,
            )
            unstage_hours(conn)
            self._go_on()
            self._settings(conn)
            pg_months.build_indexes(conn, month.table, plain=False)
            self._go_on()
        self.done.put((month, False))
        with conn.begin():
            self._settings(conn)
            pg_months.build_plain_indexes(conn, month.table)
            self._go_on()
        self.done.put((month, True))

    def _settings(self, conn: Connection) -> None:
        """For this transaction's index builds: room to sort in memory, and parallel workers
        only when this helper is alone (the last month): while both helpers work, both cores
        are busy, and the workers' start and merge cost ~30 % more CPU for the same builds
        (bench/RESULTS.md, twentieth round). Otherwise the server's own setting."""
        conn.exec_driver_sql(f"SET LOCAL maintenance_work_mem = '{pg_months.INDEX_MEMORY}'")
        workers = "DEFAULT" if self._alone() else "0"
        conn.exec_driver_sql(f"SET LOCAL max_parallel_maintenance_workers = {workers}")


def _drop(engine: Engine, months: list[Month]) -> None:
    """Drop every table the seed may have made (after its transaction ended)."""
    names = ", ".join(month.table for month in months)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {names}")
