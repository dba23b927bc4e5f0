"""A small flow's PostgreSQL statements on the event loop, through asyncpg.

Through psycopg a flow's statement is handed to a worker thread (``api/threads.py``), runs
there, and its answer is handed back: a PostgreSQL flow request cost ~250 us of the worker
threads' CPU besides the loop's ~170 (bench/RESULTS.md, twenty-second round). asyncpg runs
the same statements on the loop itself, with its protocol in Cython, binary formats and each
statement prepared once a connection: the three statements of a flow cost its client ~205 us
of CPU where psycopg through the thread hand-over cost ~500 (same round, in process). Only a
flow's statements run here (``services/downloads.py``: ``issue_random_on_loop`` and
``small_download_on_loop``); everything else stays on SQLAlchemy and psycopg.

The connections are set as ``Database.read(one_statement=True)``'s and
``Database.autocommit()``'s psycopg ones are: autocommit, generic plans (see
``db.STATEMENT_POOL_SIZE``), no JIT; ``db.LOOP_POOL_SIZE`` per process, made as the loop
needs them. The pool is the running loop's: made on its first statement, closed by the app's
shutdown (``close``), after the drain. A connection the server closed while it was idle (a
restart, ``pg_terminate_backend``) is seen by the loop, which reads its end, and replaced
when next taken; a connection the server refuses (too many clients) or one lost under a
statement raises ``StorageUnavailable`` (the documented errno), and a read whose connection was
lost is tried once more on a new one.

asyncpg is imported on a pool's first use: a SQLite process never loads it.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import suppress
from typing import Any

from sqlalchemy.engine import URL

from cdrgate.errors import StorageUnavailable
from cdrgate.storage import pg_tcp
from cdrgate.storage.driver import PostgresStatement

log = logging.getLogger(__name__)

# As SQLAlchemy's pool_timeout for the psycopg pools: a burst beyond the pool waits this long
# for a connection, then is answered as a database that is down.
ACQUIRE_TIMEOUT_S = 30.0
# Every connection's, psycopg's too (``db._postgresql_engine``), unless the URL sets one.
CONNECT_TIMEOUT_S = 10.0
# libpq connection parameters asyncpg does not know: it would send each to the server as a
# setting, which refuses it ("unrecognized configuration parameter"), and every statement on
# the loop failed. Several choose the server or how it is trusted: the loop cannot honour
# them, so a URL holding one runs its flows through psycopg, which does (``db``).
LIBPQ_ONLY = frozenset({
    "hostaddr", "require_auth", "channel_binding", "fallback_application_name",
    "replication", "gssencmode", "requiressl", "sslcompression", "sslcertmode",
    "sslcrldir", "sslsni", "requirepeer", "gssdelegation", "load_balance_hosts",
})  # fmt: skip


class LoopStatements:
    """A ``Database``'s flow statements on the running loop (a pool of connections per loop)."""

    def __init__(self, url: URL, size: int) -> None:
        self._dsn, settings = _asyncpg_dsn(url)
        self._connect_timeout = _connect_timeout(url)
        self._tcp = pg_tcp.tcp_settings(url.query)
        self._tcp_warned = False
        self._settings = {
            **settings,
            "application_name": "cdrgate",
            "jit": "off",
            "plan_cache_mode": "force_generic_plan",
        }
        self._size = size
        self._pools: dict[asyncio.AbstractEventLoop, _Pool] = {}

    async def row(
        self, statement: PostgresStatement, params: Mapping[str, Any], *, writes: bool = False
    ) -> Sequence[Any] | None:
        """The first row of ``statement`` run with ``params`` (autocommit), or None. A read
        (``writes`` false) whose connection was lost is run once more on a fresh one: it has no
        effect to repeat. A write's is not (it may have committed): the caller learns
        ``StorageUnavailable``. A statement asyncpg refused to start (``_unsent``) is run on
        another connection, a write too: nothing of it reached the server."""
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = _Pool(self._connect, self._size)
        sql, args = statement.numbered_sql, statement.args(params)
        retried = False
        # Each connection found out of step is closed, so past the pool's size a new one is made.
        for _ in range(self._size + 2):
            try:
                conn = await pool.take()
                try:
                    row: Sequence[Any] | None = await conn.fetchrow(sql, *args)
                except BaseException as exc:
                    # Cut (a cancel) or lost: closed, not reused.
                    pool.give(conn, lose=not isinstance(exc, Exception) or _lost(exc))
                    raise
                pool.give(conn)
                return row
            except Exception as exc:
                if _unsent(exc):
                    continue
                error = _storage_error(exc)
                if error is None:
                    raise
                if writes or retried or not _lost(exc):
                    raise error from exc
                retried = True
        raise StorageUnavailable("no database connection in step with the server")

    async def close(self) -> None:
        """Close the running loop's connections (the app's shutdown, after the drain)."""
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.close()

    async def _connect(self) -> Any:
        import asyncpg  # here: a SQLite process never loads it

        conn = await asyncpg.connect(
            self._dsn, timeout=self._connect_timeout, server_settings=self._settings
        )
        try:
            # asyncpg knows no keepalives: set as libpq sets psycopg's (``pg_tcp``). Its
            # transport is private, but the only way to the socket it made.
            pg_tcp.apply_to_socket(conn._transport.get_extra_info("socket"), self._tcp)
        except (AttributeError, OSError) as exc:
            # A later asyncpg without that attribute, or a socket that refuses an option:
            # the connection still serves, only without the silent-server bound. Said once.
            if not self._tcp_warned:
                self._tcp_warned = True
                log.warning("PostgreSQL keepalives not set on the loop's connections: %r", exc)
        except BaseException:
            conn.terminate()
            raise
        return conn


class _Pool:
    """A loop's connections, one taken a statement and given back at once. Not asyncpg's
    ``Pool``: its acquire and release cost a flow's three statements ~30 % more of the
    loop's CPU than the statements' own (its timeout a task, its reset a statement; twenty-
    second round). Made as statements need them, up to ``size``; a statement beyond waits
    (at most ``ACQUIRE_TIMEOUT_S``) for one given back."""

    def __init__(self, connect: Callable[[], Awaitable[Any]], size: int) -> None:
        self._connect = connect
        self._size = size
        self._idle: list[Any] = []
        self._open = 0  # connections made or being made, not yet lost or closed
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def take(self) -> Any:
        while True:
            while self._idle:
                conn = self._idle.pop()
                if not conn.is_closed():
                    return conn
                self._open -= 1  # closed by the server while idle (the loop read its end)
            if self._closed:
                raise StorageUnavailable("the server is shutting down")
            if self._open < self._size:
                self._open += 1
                try:
                    return await self._connect()
                except BaseException:
                    self._open -= 1
                    self._wake()
                    raise
            await self._wait()

    def give(self, conn: Any, *, lose: bool = False) -> None:
        """Give ``conn`` back after its statement; ``lose``: it was cut (a cancel), and its
        protocol may be mid-statement: closed, not reused."""
        if lose or self._closed or conn.is_closed():
            self._open -= 1
            conn.terminate()
        else:
            self._idle.append(conn)
        self._wake()

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        self._open -= len(idle)
        for conn in idle:
            with suppress(Exception):
                await conn.close(timeout=CONNECT_TIMEOUT_S)
        while self._waiters:
            self._wake()

    async def _wait(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(ACQUIRE_TIMEOUT_S):
                await waiter
        except TimeoutError:
            self._leave(waiter)
            # As db._storage_error answers SQLAlchemy's pool timeout.
            raise StorageUnavailable("no database connection free (pool exhausted)") from None
        except BaseException:
            self._leave(waiter)
            raise

    def _leave(self, waiter: asyncio.Future[None]) -> None:
        """``waiter`` stops waiting (a timeout, a cancel)."""
        if waiter.done() and not waiter.cancelled():
            self._wake()  # woken, but leaving: the next waiter's turn
        else:
            with suppress(ValueError):
                self._waiters.remove(waiter)

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


def _asyncpg_dsn(url: URL) -> tuple[str, dict[str, str]]:
    """``url`` as asyncpg's DSN, and the settings its ``options`` sets (``-c name=value``, as
    libpq takes them; asyncpg takes them as ``server_settings``)."""
    options = url.query.get("options")
    settings: dict[str, str] = {}
    words = shlex.split(options if isinstance(options, str) else " ".join(options or ()))
    pending = False
    for word in words:
        if pending or word.startswith("-c") or word.startswith("--"):
            setting = word if pending else word[2:]
            pending = word == "-c"
            if pending:
                continue
            name, sep, value = setting.partition("=")
            if not sep:
                raise ValueError(f"cannot read the database URL's options: {options!r}")
            settings[name.replace("-", "_")] = value
        else:
            raise ValueError(f"cannot read the database URL's options: {options!r}")
    if pending:
        raise ValueError(f"cannot read the database URL's options: {options!r}")
    if unhonoured := sorted(LIBPQ_ONLY.intersection(url.query)):
        raise ValueError(f"the database URL's {', '.join(unhonoured)}: libpq's alone")
    # libpq's, honoured here: asyncpg would send them to the server as settings.
    dropped = ["options", "connect_timeout", *pg_tcp.TCP_DEFAULTS]
    plain = url.difference_update_query(dropped).set(drivername="postgresql")
    return plain.render_as_string(hide_password=False), settings


def _storage_error(exc: BaseException) -> StorageUnavailable | None:
    """The StorageUnavailable that asyncpg's ``exc`` means, as ``db._storage_error`` maps
    psycopg's ``OperationalError``: the connection (lost, refused, the server shutting down or
    out of connections), a wait for one, a conflict the server gave up on; None otherwise."""
    import asyncpg

    failures = (
        asyncpg.PostgresConnectionError,  # class 08, and a connection lost under a statement
        asyncpg.exceptions.OperatorInterventionError,  # 57: shutdown, terminated, cancelled
        asyncpg.exceptions.InsufficientResourcesError,  # 53: too many connections
        asyncpg.exceptions.TransactionRollbackError,  # 40: deadlock, serialization
        asyncpg.InterfaceError,  # the connection closed on our side
        asyncpg.exceptions.InternalClientError,  # its protocol out of step with the server
        OSError,  # refused, unreachable
        TimeoutError,  # the connect, or the wait for a free connection
    )
    if isinstance(exc, failures):
        return StorageUnavailable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return None


def _lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection went away or is out of step with the server (a new
    one may well work)."""
    import asyncpg

    return isinstance(
        exc,
        asyncpg.ConnectionDoesNotExistError
        | asyncpg.InterfaceError
        | asyncpg.exceptions.AdminShutdownError
        | asyncpg.exceptions.InternalClientError
        | ConnectionError,
    )


def _unsent(exc: BaseException) -> bool:
    """Whether asyncpg refused to start the statement because its connection's protocol was
    not idle: it checks its state before it sends anything. So it goes when the server ended
    an idle connection (``pg_terminate_backend``, a restart) and the loop has read the error
    the server sent but not yet the connection's end (seen in a test run: "cannot switch to state 12;
    another operation (2) is in progress", 2 being the wait for the end of an error)."""
    import asyncpg

    return isinstance(exc, asyncpg.exceptions.InternalClientError) and str(exc).startswith(
        "cannot switch to state"
    )


def _connect_timeout(url: URL) -> float | None:
    """The URL's ``connect_timeout`` (libpq's: seconds, 0 or less waits for ever), else
    ``CONNECT_TIMEOUT_S`` as psycopg's."""
    value = pg_tcp.query_value(url.query, "connect_timeout")
    if value is None:
        return CONNECT_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"the database URL's connect_timeout is no number: {value!r}") from None
    return seconds if seconds > 0 else None
