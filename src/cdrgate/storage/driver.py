"""A flow's hot statements on the driver's cursor itself, compiled once from their Core form.

SQLAlchemy's ``Connection.execute`` costs about 28 us on a one-row lookup that ``sqlite3``
runs in 3 us (``exec_driver_sql`` about 35 us: it is the execution context that costs, not
the compilation); a small flow runs six such statements per pair of requests (bench/RESULTS.md,
sixth round). On PostgreSQL it costs about 60 us of the 130 us a one-row lookup takes through
psycopg (sixteenth round). So the storage module that owns a table keeps each hot statement as
its Core definition (the one home of the statement) and, beside it, a ``SqliteStatement`` and
a ``PostgresStatement`` compiled from that definition (SQLite's at import, PostgreSQL's on
first use): the same SQL text, never written twice. Errors from the driver are ``sqlite3``
and ``psycopg`` ones; ``Database``'s transaction helpers translate them as they do
SQLAlchemy's.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from operator import itemgetter
from typing import Any, Self

from sqlalchemy import Connection
from sqlalchemy.dialects import sqlite
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import Executable

_DIALECT = sqlite.dialect()


@cache
def _postgres_dialect() -> Any:
    """psycopg's dialect with positional ``%s`` marks: the same stand-in mechanics as SQLite's
    ``?``. Imported on first use: a SQLite process never loads it (~25 ms of a start-up,
    tests/cli/test_startup.py)."""
    from sqlalchemy.dialects.postgresql import psycopg

    return psycopg.dialect(paramstyle="format")  # type: ignore[no-untyped-call]


class StoreConnection(sqlite3.Connection):
    """``sqlite3``'s connection to a store (``Database``'s engines make theirs so), with one
    cursor kept for the statements whose result is read at once (``runner``).
    ``Connection.execute`` makes a cursor object per statement: ~1.4k instructions of a
    statement's ~8k in the ``sqlite3`` module (bench/RESULTS.md, sixteenth round)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kept = self.cursor()


def runner(raw: sqlite3.Connection) -> sqlite3.Connection | sqlite3.Cursor:
    """What runs a statement whose result is read whole before the next statement on ``raw``
    (a kept cursor's next ``execute`` drops what it ran before): ``raw``'s kept cursor, or
    ``raw`` itself (a cursor a statement) when it is not a ``StoreConnection``."""
    kept: sqlite3.Cursor | None = getattr(raw, "kept", None)
    return raw if kept is None else kept


# ``postgres_runner``'s cursor, an attribute of the psycopg connection it runs on.
_KEPT_CURSOR = "cdrgate_kept_cursor"


def postgres_runner(raw: Any) -> Any:
    """What runs a statement whose result is read whole before the next statement on ``raw``
    (a ``psycopg.Connection``): a cursor kept on it, made on its first statement. As
    ``sqlite3``'s, psycopg's ``Connection.execute`` makes a cursor per statement: ~25-45 us of
    the client's ~100-160 us of CPU for a one-row lookup (bench/RESULTS.md, twentieth round).
    Kept on the connection itself, so that it lives and ends with it (a table keyed by the
    connection would keep both alive: a cursor refers to its connection); a connection is used
    by one thread at a time (the pool's checkout)."""
    kept = getattr(raw, _KEPT_CURSOR, None)
    if kept is None:
        kept = raw.cursor()
        setattr(raw, _KEPT_CURSOR, kept)
    return kept


def sqlite_driver(conn: Connection) -> sqlite3.Connection | None:
    """The ``sqlite3`` connection under ``conn`` (in its transaction), None on PostgreSQL."""
    if conn.dialect.name != "sqlite":
        return None
    # The pool's own attribute: for pysqlite the DBAPI connection is sqlite3's itself, and
    # ``driver_connection`` (which differs only for asyncio adapters) is two properties more
    # on every hot statement.
    raw: sqlite3.Connection = conn.connection.dbapi_connection  # type: ignore[assignment]
    return raw


def postgres_driver(conn: Connection) -> Any | None:
    """The ``psycopg.Connection`` under ``conn`` (in its transaction), None on SQLite. Typed
    ``Any``: psycopg is imported only where PostgreSQL is used."""
    if conn.dialect.name != "postgresql":
        return None
    return conn.connection.dbapi_connection


class _Slot:
    """A stand-in value for a runtime parameter while compiling: where it lands is where
    that parameter goes (``name``, or item ``index`` of an expanding list)."""

    def __init__(self, name: str, index: int | None = None) -> None:
        self.name, self.index = name, index


@dataclass(frozen=True)
class DriverStatement:
    """``stmt`` as one driver's text with its positional marks (``SqliteStatement``: ``?``,
    ``PostgresStatement``: psycopg's ``%s``), and what each mark takes.

    Values go to the driver as given and rows come back as its tuples: for statements whose
    column types need no bind or result processing (strings and integers here).

    ``expand``: the length of each expanding parameter (``IN`` lists): one statement per
    length. ``column_keys``: the columns an INSERT sets (all its values are then given).
    """

    sql: str
    # Per mark: a runtime parameter's name, (name, index) in an expanding one, or a constant
    # the statement itself carries (a literal SQLAlchemy bound, such as SQLite's OFFSET 0).
    marks: tuple[Any, ...]
    _getter: Callable[[Mapping[str, Any]], tuple[Any, ...]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @classmethod
    def of(
        cls,
        stmt: ClauseElement,
        *,
        expand: Mapping[str, int] | None = None,
        column_keys: Sequence[str] | None = None,
    ) -> Self:
        compiled = stmt.compile(dialect=cls._dialect(), column_keys=column_keys)
        assert isinstance(compiled, SQLCompiler), "a statement, not DDL"
        sizes = expand or {}
        stand_ins: dict[str, Any] = {
            name: [_Slot(name, i) for i in range(sizes[name])] if name in sizes else _Slot(name)
            for name, bind in compiled.binds.items()
            if bind.required or name in sizes
        }
        state = compiled.construct_expanded_state(stand_ins)
        marks: list[Any] = []
        for name in state.positiontup or ():
            value = state.parameters[name]
            if isinstance(value, _Slot):
                marks.append(value.name if value.index is None else (value.name, value.index))
            else:
                marks.append(_Constant(value))
        return cls(state.statement, tuple(marks))

    @staticmethod
    def _dialect() -> Any:
        raise NotImplementedError  # each driver's class names its dialect

    def __post_init__(self) -> None:
        # Most hot statements take named values only: one C-level getter builds their tuple,
        # ~10x faster than the loop below on a 9-value INSERT (~1.5 us a statement).
        names = self.marks if all(isinstance(mark, str) for mark in self.marks) else None
        getter = _tuple_getter(names) if names else None
        object.__setattr__(self, "_getter", getter)

    def args(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        if self._getter is not None:
            return self._getter(params)
        # A list, not a generator: a generator's frame is resumed once a value.
        return tuple([
            mark.value if isinstance(mark, _Constant)
            else params[mark] if isinstance(mark, str)
            else params[mark[0]][mark[1]]
            for mark in self.marks
        ])  # fmt: skip


class SqliteStatement(DriverStatement):
    """A statement for ``sqlite3``: ``?`` marks, run on the ``sqlite3.Connection``."""

    @staticmethod
    def _dialect() -> Any:
        return _DIALECT

    def run(self, raw: sqlite3.Connection, params: Mapping[str, Any]) -> sqlite3.Cursor:
        return raw.execute(self.sql, self.args(params))

    def run_at_once(self, raw: sqlite3.Connection, params: Mapping[str, Any]) -> sqlite3.Cursor:
        """``run``, for a result read whole before the next statement (``runner``)."""
        return runner(raw).execute(self.sql, self.args(params))


class PostgresStatement(DriverStatement):
    """A statement for psycopg: ``%s`` marks and the bind casts SQLAlchemy renders
    (``%s::VARCHAR``), run on the ``psycopg.Connection``. psycopg prepares a statement
    server-side once a connection has run it a few times (its ``prepare_threshold``), as it
    did under SQLAlchemy."""

    @staticmethod
    def _dialect() -> Any:
        return _postgres_dialect()

    def run(self, raw: Any, params: Mapping[str, Any]) -> Any:
        return raw.execute(self.sql, self.args(params))

    def run_at_once(self, raw: Any, params: Mapping[str, Any]) -> Any:
        """``run``, for a result read whole before the next statement (``postgres_runner``)."""
        return postgres_runner(raw).execute(self.sql, self.args(params))

    @cached_property
    def numbered_sql(self) -> str:
        """``sql`` with PostgreSQL's own numbered marks (``$1``, ``$2``...) for asyncpg
        (``storage/pg_loop.py``), which sends the text as it is: psycopg's ``%%`` is a ``%``."""
        count = 0

        def number(mark: re.Match[str]) -> str:
            nonlocal count
            if mark.group() == "%%":
                return "%"
            count += 1
            return f"${count}"

        numbered = _MARK.sub(number, self.sql)
        assert count == len(self.marks), "one value a mark"
        return numbered


_MARK = re.compile(r"%%|%s")


@dataclass(frozen=True)
class _Constant:
    value: Any


def _tuple_getter(names: Sequence[str]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """``params -> tuple(params[name] for name in names)``; itemgetter of one name gives the
    value itself, not a tuple."""
    if len(names) == 1:
        name = names[0]
        return lambda params: (params[name],)
    return itemgetter(*names)


@dataclass(frozen=True)
class HotStatement:
    """A hot statement: its Core definition and the ``SqliteStatement`` and
    ``PostgresStatement`` compiled from it, run on whichever engine ``conn`` is.

    ``for_postgres``: what PostgreSQL's form is compiled from (``core``, or ``core`` with a
    ``RETURNING``), on first use (``postgres``), so that SQLite never loads its dialect."""

    core: Executable
    sqlite: SqliteStatement
    for_postgres: ClauseElement
    column_keys: tuple[str, ...] | None = None

    @classmethod
    def of(cls, stmt: Executable, *, column_keys: Sequence[str] | None = None) -> HotStatement:
        assert isinstance(stmt, ClauseElement)
        keys = None if column_keys is None else tuple(column_keys)
        return cls(stmt, SqliteStatement.of(stmt, column_keys=keys), stmt, keys)

    @cached_property
    def postgres(self) -> PostgresStatement:
        return PostgresStatement.of(self.for_postgres, column_keys=self.column_keys)

    def first(self, conn: Connection, params: Mapping[str, Any]) -> Sequence[Any] | None:
        """The first row, or None."""
        cursor = self._on_driver(conn, params)
        if cursor is None:
            return conn.execute(self.core, params).first()
        # Fetched to the end: an UPDATE ... RETURNING is complete only once its rows are read.
        rows = cursor.fetchall()
        return rows[0] if rows else None

    def rowcount(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Run it; the rows it changed."""
        cursor = self._on_driver(conn, params)
        if cursor is None:
            return int(conn.execute(self.core, params).rowcount)
        return int(cursor.rowcount)

    def inserted_id(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Run an INSERT of one row; the row's integer key (on PostgreSQL its ``postgres``
        form returns it: ``storage/audit.py``)."""
        raw = sqlite_driver(conn)
        if raw is not None:
            row_id = self.sqlite.run_at_once(raw, params).lastrowid
            assert row_id is not None, "an INSERT of one row has its rowid"
            return row_id
        postgres = postgres_driver(conn)
        if postgres is not None:
            row = self.postgres.run_at_once(postgres, params).fetchone()
            assert row is not None, "an INSERT ... RETURNING of one row has its key"
            return int(row[0])
        key = conn.execute(self.core, dict(params)).inserted_primary_key
        assert key is not None, "an INSERT of one row has its key"
        return int(key[0])

    def _on_driver(self, conn: Connection, params: Mapping[str, Any]) -> Any | None:
        """Its cursor, run on ``conn``'s driver; None when neither driver is looked up (the
        Core run that tests/storage/test_driver_statements.py compares them with)."""
        raw = sqlite_driver(conn)
        if raw is not None:
            return self.sqlite.run_at_once(raw, params)  # read whole by first and rowcount
        postgres = postgres_driver(conn)
        if postgres is not None:
            return self.postgres.run_at_once(postgres, params)  # as SQLite's
        return None
