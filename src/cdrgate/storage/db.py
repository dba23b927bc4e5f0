"""The database handle: engine set-up per dialect and the transaction helpers.

SQLite runs in WAL mode with a busy timeout. Its write transactions start with
``BEGIN IMMEDIATE`` so two writers queue on the lock instead of failing half-way with
"database is locked" when a read transaction tries to upgrade.

PostgreSQL runs at READ COMMITTED through psycopg 3 with a small pool per process (many
worker processes share one server); exports stream through server-side cursors (``cdrs``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from cdrgate.errors import StorageUnavailable, UsageError

SQLITE_BUSY_TIMEOUT_S = 30
POSTGRES_POOL_SIZE = 5
POSTGRES_MAX_OVERFLOW = 10


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` as psycopg 3 URLs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    try:
        parsed = make_url(normalise_url(url))
    except Exception as exc:  # sqlalchemy raises ArgumentError for junk URLs
        raise UsageError(f"not a database URL: {url!r}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed, **kwargs)
    if backend == "postgresql":
        return _postgresql_engine(parsed, **kwargs)
    raise UsageError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


def _postgresql_engine(url: Any, **kwargs: Any) -> Engine:
    # Every worker process has its own pool: workers x (pool_size + max_overflow) must stay
    # below the server's max_connections (100 by default); requests beyond wait for a slot.
    kwargs.setdefault("pool_size", POSTGRES_POOL_SIZE)
    kwargs.setdefault("max_overflow", POSTGRES_MAX_OVERFLOW)
    kwargs.setdefault("pool_pre_ping", True)  # survive a database restart or failover
    kwargs.setdefault("pool_recycle", 1800)
    # JIT compiles any plan costing over 100000, which a large export does: that is tens to
    # hundreds of ms before the first row, for a streamed index scan that gains nothing.
    options = " ".join(filter(None, [url.query.get("options"), "-c jit=off"]))
    connect_args = {"application_name": "cdrgate", "connect_timeout": 10, "options": options}
    connect_args.update(kwargs.pop("connect_args", {}))
    return create_engine(
        url.difference_update_query(["options"]), connect_args=connect_args, **kwargs
    )


def _sqlite_engine(url: Any, **kwargs: Any) -> Engine:
    connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 20)
    engine = create_engine(url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event (below) issue BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            f"busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}",
            "foreign_keys=ON",
            "temp_store=MEMORY",
            "cache_size=-65536",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("cdrgate_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Database:
    """One engine plus the helpers every storage module uses."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url, **engine_kwargs)
        self.dialect = self.engine.dialect.name
        # SQLite has one writer at a time, and a writer that finds the lock taken sleeps in
        # the busy handler (up to 100 ms a try) instead of queueing: under concurrent requests
        # that made flows take seconds. Threads of this process queue here instead.
        self._sqlite_writer = threading.RLock() if self.dialect == "sqlite" else None

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed on success, rolled back on any exception."""
        with self._writer_turn(), _translate_errors(), self.engine.connect() as conn:
            conn.execution_options(cdrgate_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """Queue behind this process's other SQLite writers, as long as SQLite itself would."""
        if self._sqlite_writer is None:
            yield
            return
        if not self._sqlite_writer.acquire(timeout=SQLITE_BUSY_TIMEOUT_S):
            raise StorageUnavailable("database is locked")
        try:
            yield
        finally:
            self._sqlite_writer.release()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction (one consistent snapshot on both engines)."""
        with _translate_errors(), self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A bare connection (caller manages transactions), with storage errors translated."""
        with _translate_errors(), self.engine.connect() as conn:
            yield conn

    def placeholder(self) -> str:
        """The driver's positional placeholder, for raw executemany on hot paths."""
        return "?" if self.engine.dialect.paramstyle == "qmark" else "%s"

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def _translate_errors() -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        raise StorageUnavailable(_short(exc)) from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise StorageUnavailable(_short(exc)) from exc
        raise


def _short(exc: DBAPIError) -> str:
    return str(exc.orig).splitlines()[0] if exc.orig is not None else str(exc)
