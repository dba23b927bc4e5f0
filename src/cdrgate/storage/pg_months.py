"""Months new to ``cdr`` loaded apart and attached at the end: PostgreSQL's own idiom for a
bulk load into a partitioned table.

A month that has no partition when a load first meets it, and no rows waiting for one in
``cdr_default``, holds no stored row: none of the load's rows of that month can be a
duplicate of a stored one. Its rows go into a table of their own with no index (routed there
through a partitioned table of this transaction, ``loading``), made in the load's
transaction, so no one else sees it and a failed load leaves nothing. ``finish``, once every
row is in, drops the duplicates within the load (the first in file order stays), builds the
month's indexes as ``cdr``'s partitions have them (one sorted pass each, where an insert into
the B-trees costs a random descent per row and index), counts the rows into cdr_summary and
attaches the table as the month's partition. ATTACH PARTITION takes a SHARE UPDATE EXCLUSIVE
lock on ``cdr`` (readers and writers go on) and an ACCESS EXCLUSIVE one on ``cdr_default``,
held from the attach to the commit, which follows at once; finding the indexes it needs
already there, it attaches them instead of building them. Measured in bench/RESULTS.md,
"Issue 17, seed and import on PostgreSQL (seventeenth round)"; docs/storage.md "Months new to
the store".

What may happen meanwhile on other connections is checked when attaching, under the
partitions' DDL lock (``partitions.DDL_LOCK_KEY``): a month whose partition was made
meanwhile, whose rows landed in ``cdr_default``, or whose attach cannot have its lock within
``partitions.DDL_LOCK_TIMEOUT`` has its rows inserted into ``cdr`` the ordinary way instead
(duplicates skipped, counted as they go in).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from cdrgate.storage import partitions, summary
from cdrgate.storage.columns import COLUMNS

# Room to sort a month's index entries in memory (a 1M-row month's widest index is ~60 MB).
INDEX_MEMORY = "256MB"
UNIQUE_VIOLATION = "23505"
# The parent's index as pg_get_indexdef prints it: "CREATE [UNIQUE] INDEX name ON ONLY
# public.cdr USING btree (...) [WHERE ...]"; the same index on a month's table is the text
# from USING on.
_INDEX_DEF = re.compile(r"CREATE (UNIQUE )?INDEX \S+ ON ONLY \S+ (USING .*)")
# cdr's indexes: constraint ones (the primary key, the duplicate rule) by their constraint's
# definition ("PRIMARY KEY (id, ts)"), for a partition's index of a constraint is attached only
# to a constraint; the others by their index's.
_PARENT_INDEXES = (
    "SELECT pg_get_indexdef(i.indexrelid), pg_get_constraintdef(c.oid) "
    "FROM pg_index AS i LEFT JOIN pg_constraint AS c ON c.conindid = i.indexrelid "
    "AND c.conrelid = i.indrelid WHERE i.indrelid = 'cdr'::regclass ORDER BY c.oid IS NULL"
)
# The duplicate rule's constraint as pg_get_constraintdef prints it: "UNIQUE (ts, callid, sn)"
# since migration 0016 (docs/storage.md "The price: the partition key in unique constraints").
_UNIQUE_DEF = re.compile(r"UNIQUE \((.*)\)")
_NAMES = ", ".join(COLUMNS)


class NewMonths:
    """The months a load in ``conn``'s transaction stores apart (see the module docstring)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        # Named after the backend: two loads at once never wait on each other's names.
        self.loading = f"cdr_loading_{pid}"
        self._new: dict[int, bool] = {}  # month start -> loaded apart?
        self._tables: dict[int, str] = {}

    def split(self, months: Iterable[int]) -> tuple[set[int], set[int]]:
        """``(apart, stored)``: which of ``months`` (month starts) this load stores apart
        (decided once per month, at its first sight) and which go into ``cdr``."""
        unseen = sorted(set(months) - self._new.keys())
        if unseen:
            known = self._known_months(unseen)
            for start in unseen:
                self._new[start] = start not in known
                if self._new[start]:
                    self._make_table(start)
        apart = {start for start in months if self._new[start]}
        return apart, set(months) - apart

    def _known_months(self, starts: list[int]) -> set[int]:
        """The months that have a partition or rows in ``cdr_default``. Asked on another
        connection: a lock on ``cdr_default`` held by this transaction until it ends would
        make another connection's ``partitions.ensure`` wait out its lock timeout."""
        known = set(starts) & set(partitions.existing(self.conn).values())
        with self.conn.engine.connect() as other:
            for start in set(starts) - known:
                waiting = other.exec_driver_sql(
                    f"SELECT EXISTS (SELECT FROM {partitions.DEFAULT_PARTITION} "
                    f"WHERE ts >= {start} AND ts < {partitions.next_month(start)})"
                ).scalar_one()
                if waiting:
                    known.add(start)
            other.rollback()
        return known

    def _make_table(self, start: int) -> None:
        conn = self.conn
        if not self._tables:
            # The ids' default (cdr's sequence) comes along: rows take them as they go in.
            conn.exec_driver_sql(
                f"CREATE TABLE {self.loading} (LIKE cdr INCLUDING DEFAULTS) PARTITION BY RANGE (ts)"
            )
        table = f"{self.loading}_{partitions.partition_name(start).removeprefix('cdr_p')}"
        conn.exec_driver_sql(
            f"CREATE TABLE {table} PARTITION OF {self.loading} "
            f"FOR VALUES FROM ({start}) TO ({partitions.next_month(start)})"
        )
        self._tables[start] = table

    def finish(self) -> int:
        """Attach (or insert) every month loaded apart; returns how many of its rows were
        dropped as duplicates. Call once all rows are in, last before the commit."""
        if not self._tables:
            return 0
        conn = self.conn
        conn.exec_driver_sql(f"SET LOCAL maintenance_work_mem = '{INDEX_MEMORY}'")
        dropped = 0
        for table in self._tables.values():
            conn.exec_driver_sql(f"ALTER TABLE {self.loading} DETACH PARTITION {table}")
            dropped += build_indexes(conn, table)
        conn.exec_driver_sql(f"DROP TABLE {self.loading}")
        conn.exec_driver_sql(
            "SELECT pg_advisory_xact_lock(%(key)s)", {"key": partitions.DDL_LOCK_KEY}
        )
        for start, table in self._tables.items():
            if attach(conn, start, table):
                summary.add_table(conn, partitions.partition_name(start))
            else:
                dropped += insert(conn, start, table)
        return dropped


def build_indexes(conn: Connection, table: str, plain: bool = True) -> int:
    """Build on ``table`` (a month's rows) the indexes ``cdr``'s partitions have; returns how
    many duplicates (rows alike in the duplicate rule's columns) were dropped first. A load
    rarely holds duplicates: the unique index's build finds them, and only then are they
    looked for (a sort of the month's rows) and the builds made again; of rows alike, the
    first in file (id) order stays. ``plain`` False: the constraints' indexes only (the
    primary key and the duplicate rule), the others left to ``plain_indexes``."""
    indexes = conn.exec_driver_sql(_PARENT_INDEXES).all()
    statements = [_index_sql(table, *index) for index in indexes if plain or index[1] is not None]
    savepoint = conn.begin_nested()
    try:
        for statement in statements:
            conn.exec_driver_sql(statement)
        savepoint.commit()
        return 0
    except DBAPIError as exc:
        savepoint.rollback()
        if getattr(exc.orig, "sqlstate", None) != UNIQUE_VIOLATION:
            raise
    duplicates = (
        f"SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY {_duplicate_key(indexes)} "
        f"ORDER BY id) AS nth FROM {table}) AS numbered WHERE nth > 1"
    )
    deleted = conn.exec_driver_sql(f"DELETE FROM {table} WHERE id IN ({duplicates})")
    for statement in statements:
        conn.exec_driver_sql(statement)
    return max(int(deleted.rowcount), 0)


def plain_indexes(conn: Connection, table: str) -> list[str]:
    """The statements building on ``table`` the indexes of ``cdr``'s partitions that are no
    constraint's, once ``build_indexes(conn, table, plain=False)`` has built the others (and
    dropped any duplicates). Each may run in a transaction of its own, at the same time as
    the others: CREATE INDEX takes a SHARE lock, which lets other transactions read the
    table and build its other indexes meanwhile, where ALTER TABLE ... ADD of a constraint
    takes ACCESS EXCLUSIVE."""
    return [
        _index_sql(table, index, None)
        for index, constraint in conn.exec_driver_sql(_PARENT_INDEXES).all()
        if constraint is None
    ]


def attach(conn: Connection, start: int, table: str) -> bool:
    """Attach ``table`` (its indexes built) as the month's partition, not yet counted in
    cdr_summary; False (nothing done) when that cannot be now (see the module docstring).
    Call under the partitions' DDL lock."""
    name = partitions.partition_name(start)
    if (
        start in partitions.existing(conn).values()
        or conn.exec_driver_sql(
            "SELECT to_regclass(%(name)s) IS NOT NULL", {"name": name}
        ).scalar_one()
    ):
        return False
    try:
        partitions.run_ddl(
            conn,
            [
                f"ALTER TABLE {table} RENAME TO {name}",
                # Fails when cdr_default now holds rows of the month, or its lock is not had.
                f"ALTER TABLE cdr ATTACH PARTITION {name} "
                f"FOR VALUES FROM ({start}) TO ({partitions.next_month(start)})",
            ],
        )
    except DBAPIError:
        return False
    # Its indexes were named after the table when built; named as a month's are.
    for index in conn.exec_driver_sql(
        "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %(name)s::regclass",
        {"name": name},
    ).scalars():
        conn.exec_driver_sql(f"ALTER INDEX {index} RENAME TO {name}{index.removeprefix(table)}")
    return True


def attach_counted(conn: Connection, months: Iterable[tuple[int, str]], check: str) -> int:
    """Each month's table (``(start, table)``, its indexes built and a range CHECK named
    ``check`` on it, its rows already counted into cdr_summary) attached as the month's
    partition, the CHECK dropped and its autovacuum setting reset; a month whose partition
    was made meanwhile has its rows uncounted, then inserted (``insert``). Takes the
    partitions' DDL lock (held to the commit); returns the rows skipped as duplicates."""
    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%(key)s)", {"key": partitions.DDL_LOCK_KEY})
    skipped = 0
    for start, table in months:
        if attach(conn, start, table):
            name = partitions.partition_name(start)
            conn.exec_driver_sql(
                f"ALTER TABLE {name} DROP CONSTRAINT {check}, RESET (autovacuum_enabled)"
            )
        else:
            summary.subtract_table(conn, table)
            skipped += insert(conn, start, table)
    return skipped


def insert(conn: Connection, start: int, table: str) -> int:
    """The month's rows of ``table`` into ``cdr`` as any insert (duplicates of rows stored
    meanwhile skipped, the new ones counted), then ``table`` dropped; returns how many were
    skipped. Call under the partitions' DDL lock."""
    rows = conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one()
    # A partition made meanwhile: its lock makes this backend read the new partition list
    # before the INSERT routes rows (pg_bulk.ensure_months, which cannot be called here:
    # partitions.ensure would wait for the DDL lock this transaction holds).
    name = partitions.partition_name(start)
    if conn.exec_driver_sql(
        "SELECT to_regclass(%(name)s) IS NOT NULL", {"name": name}
    ).scalar_one():
        conn.exec_driver_sql(f"LOCK TABLE {name} IN ROW EXCLUSIVE MODE")
    new = summary.insert_counted(
        conn, f"INSERT INTO cdr (id, {_NAMES}) SELECT id, {_NAMES} FROM {table} ORDER BY id"
    )
    conn.exec_driver_sql(f"DROP TABLE {table}")
    return int(rows) - new


def _duplicate_key(indexes: Iterable[tuple[str, str | None]]) -> str:
    """The columns of ``cdr``'s duplicate rule, from its constraints' definitions (rows of
    ``_PARENT_INDEXES``): read from the catalog like the rest of the index set, so the
    migrations stay its one home."""
    for _, constraint in indexes:
        if constraint is not None and (found := _UNIQUE_DEF.fullmatch(constraint)):
            return found[1]
    raise ValueError("cdr has no unique constraint")


def _index_sql(table: str, index: str, constraint: str | None) -> str:
    """The statement making ``table`` the index of ``cdr`` that ``index`` (pg_get_indexdef)
    and ``constraint`` (pg_get_constraintdef, None for a plain index) define."""
    if constraint is not None:
        return f"ALTER TABLE {table} ADD {constraint}"
    found = _INDEX_DEF.fullmatch(index)
    if found is None:
        raise ValueError(f"unexpected index definition: {index}")
    return f"CREATE {found[1] or ''}INDEX ON {table} {found[2]}"
