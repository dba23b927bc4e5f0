"""The database handle: engine set-up per dialect and the transaction helpers.

SQLite runs in WAL mode with a busy timeout. Its write transactions start with
``BEGIN IMMEDIATE`` so two writers queue on the lock instead of failing half-way with
"database is locked" when a read transaction tries to upgrade.

PostgreSQL runs at READ COMMITTED through psycopg 3 with a small pool per process (many
worker processes share one server); exports stream through server-side cursors (``cdrs``).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, RootTransaction, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from cdrgate import sqlite_interrupts
from cdrgate.errors import StorageUnavailable, UsageError
from cdrgate.logsetup import masked_url
from cdrgate.storage import pg_tcp
from cdrgate.storage.driver import StoreConnection
from cdrgate.storage.pg_liveness import ping_when_unsure
from cdrgate.storage.pg_loop import CONNECT_TIMEOUT_S, LoopStatements
from cdrgate.storage.replicas import Replica, ReplicaSet, replica_engine_options, wal_position
from cdrgate.storage.sqlite_settings import CACHE_KIB as CACHE_KIB
from cdrgate.storage.sqlite_settings import SQLITE_BUSY_TIMEOUT_S as SQLITE_BUSY_TIMEOUT_S
from cdrgate.storage.sqlite_settings import connection_settings as connection_settings

log = logging.getLogger("cdrgate.storage")

# What a process may hold against the server's ``max_connections``, pool by pool (the sum is
# ``CONNECTIONS_A_PROCESS``: README's rule for ``--workers``). Each is sized by what holds one
# (twenty-third round, bench/RESULTS.md): a pool too small makes a burst wait for a free
# connection (at most ``pool_timeout``, 30 s, then 30003), never fail at once.
#
# Requests' transactions in worker threads (logins, stored randoms, the downloads the loop
# does not answer, audit records, ingest): kept covers a keep-alive poller load (8 concurrent
# flows each held one for their request: with 5 kept, every request past the fifth opened and
# closed a PostgreSQL backend of its own; bench/RESULTS.md, eighth round). Since the
# twenty-second round the small flows' statements run on the loop (``LOOP_POOL_SIZE``), and
# this pool serves what they do not: 2 past the 6 kept for a burst (was 4).
POSTGRES_POOL_SIZE = 6
POSTGRES_MAX_OVERFLOW = 2
# ``Database.read(one_statement=True)`` and ``Database.autocommit()`` (a token's read for any
# authenticated request in a thread, and the small download's thread path: a flow the loop
# does not answer) take connections from a pool of their own on PostgreSQL, always in
# autocommit, and planning their prepared statements once (``plan_cache_mode =
# force_generic_plan``): with PostgreSQL's default, a small download's day read was planned
# again on every run (a custom plan, to prune the monthly partitions at plan time), ~270 us of
# the backend's CPU of ~500 (bench/RESULTS.md, nineteenth round); a generic plan prunes them
# when it runs. Only these short statements get that mode: a year's export by extension ran
# slower on a generic plan. No overflow: a burst waits for one of these, held for a statement
# or two. 3, not the 5 it had while the small flows ran here (before the twenty-second round).
STATEMENT_POOL_SIZE = 3
# The small flows' statements on the event loop through asyncpg (``storage/pg_loop.py``), set
# as the statements' pool above is. Each is held for one round trip, but the loop starts the
# next request's statement while others are out: at 8 clients all 5 are in use, and 3 or 2
# cost a flow request more of the loop's CPU (its waits for one; twenty-third round).
LOOP_POOL_SIZE = 5
# Downloads read their pages through a pool of their own, so exports can never take the
# connections logins, randoms, audit and ingest need; and since a download reads each page
# once, its connections keep a small page cache (the others' is 64 MB each). Pages are read
# ``api/streaming.PAGE_THREADS`` (4) at a time; a download's first page (in its request's
# thread) waits for one of these beyond that. No overflow (was 4).
EXPORT_POOL_SIZE = 4
EXPORT_MAX_OVERFLOW = 0
# The JSON query API reads on the downloads' pool too (``query_read``: its pages and counts,
# its CSV's pages, changes, stats; the console's), but holds at most this many of its
# connections at once: four long reads (a year's stats, a count) took all 4, and every
# download's pages waited behind them (a week's download 4-8 s where it took 0.1 s alone, up
# to the pool's 30 s, then 30003; twenty-fourth round). The fourth is the downloads' alone,
# so a download waits only for other downloads' page reads; a query-API read past its share
# waits for one as long as for a pooled connection, then 503. 3, not 2: at 2 the query API
# answered four clients' long reads ~20 % slower (on a busy machine), at 3 as fast as with
# no share. No connection more: the budget stays ``CONNECTIONS_A_PROCESS``.
QUERY_READS = 3
CONNECTIONS_A_PROCESS = (
    POSTGRES_POOL_SIZE + POSTGRES_MAX_OVERFLOW + STATEMENT_POOL_SIZE + LOOP_POOL_SIZE
    + EXPORT_POOL_SIZE + EXPORT_MAX_OVERFLOW
)  # fmt: skip
EXPORT_CACHE_KIB = 4096
# How long a query-API read waits for its share (``QUERY_READS``): SQLAlchemy's default
# ``pool_timeout``, which a ``Database``'s own ``pool_timeout`` replaces, as for its pools.
QUERY_WAIT_S = 30.0
DEFAULT_MAX_REPLICA_LAG_MS = 1000
# The event loop's own connection never checkpoints at commit (it would write megabytes on the
# loop); after this many group commits on it, a passive one starts in a thread. Counted per
# commit, not per request in it: a busy loop's commit holds several requests' writes, and a
# checkpoint per 16 of those took ~12 % of a second core under a small flow (tenth round).
# Often, as SQLite's own auto-checkpoint would try after every commit past its threshold: a
# passive checkpoint stops at the oldest reader's snapshot, and the WAL is only reused from
# its start once one has caught up while no reader needs it. Once every 256 commits, 60 slow
# readers' page reads kept that from happening and the WAL grew to 900 MB in two minutes
# (bench/slow_readers.py); a checkpoint with nothing to copy costs a few microseconds.
LOOP_CHECKPOINT_EVERY = 16
# Under sustained writes on the loop a passive checkpoint never catches up (the loop commits
# while it copies), so the WAL is never reused from its start and grew ~57 MB/s without end
# (twelfth round). Once a checkpoint finds at least this much in the WAL, the loop holds its
# writes (``run_on_loop`` awaits, nothing sleeps) until the open group commit has committed
# and one more passive pass, with no loop write in flight, has copied the rest: the next BEGIN
# then reads at read-mark 0 and its first write restarts the WAL. A pass copies only what was
# written since the last one, so the hold is short. In bytes, counted in the store's pages:
# as 4096 frames it was 64 MiB on a store of 16 KiB pages (``services/stores.py``), and every
# page a read takes, mapped or not, is first looked up in the WAL's index, whose hash table
# (4096 frames) slows as it fills: that lookup was 1.6 % of the server's CPU under the small
# flows at 64 MiB, 0.5 % at 16 MiB (bench/RESULTS.md, twenty-seventh round).
LOOP_WAL_HOLD_BYTES = 16 * 1024 * 1024
# The loop's writes look for a replaced or deleted store file (``check_file``) at most this
# often: an os.stat per write showed in a small flow's profile, and the window only delays
# the refusal (every other write, and readyz, still looks each time).
LOOP_FILE_CHECK_S = 0.25

T = TypeVar("T")


class WriterBusy(Exception):
    """A write on the event loop cannot start at once (another writer holds the lock), or a
    read there found SQLite busy, and nothing has been written yet: run the whole call again
    in a worker thread."""


class _ThreadWriting(WriterBusy):
    """WriterBusy because a thread of this process holds its writer lock: ``run_on_loop``
    waits on the loop for it and runs the call again there. Sending the call to a thread
    instead made a cascade: that thread's write held the lock in turn, so the loop's next
    write found it held too, and so on while the load lasted (twelfth round)."""


class CommitFailed(StorageUnavailable):
    """The loop's group commit failed: the writes of every request in it are rolled back,
    those a request made before raising what it raised included."""


class _Batch:
    """The loop connection's open write transaction, shared by every request that writes on
    the loop in one turn of it (group commit): each request's writes are in a SAVEPOINT of
    their own, and ``Database._commit_batch``, scheduled by the first, commits them all."""

    def __init__(self, tx: RootTransaction, raw: sqlite3.Connection) -> None:
        self.tx, self.raw = tx, raw
        self.thread = threading.get_ident()
        self.writers = 0  # requests with writes in it (for the log of a failed commit)
        self.waiters: list[asyncio.Future[None]] = []
        self.ended = False  # committed, or failed with ``error``
        self.error: CommitFailed | None = None


@dataclass
class _OnLoop:
    """The call ``Database.run_on_loop`` is running; ``batch``: the group commit its answer
    waits for (where its writes went, or the open one its reads read in: ``_LoopRead``)."""

    batch: _Batch | None = None
    wrote: bool = False
    # It read only by ``read(one_statement=True)``: answered with a group commit it does not
    # depend on (``Database._alongside``).
    alongside: bool = False
    # ``Database.on_commit``'s actions: run once the group commit holding its writes has
    # committed, dropped if it fails (or if ``call`` is run again, its writes undone).
    committed: list[Callable[[], None]] | None = None


_ON_LOOP: ContextVar[_OnLoop | None] = ContextVar("cdrgate_on_loop", default=None)


def _run_committed(on_loop: _OnLoop) -> None:
    """``on_loop``'s ``on_commit`` actions, once: its writes are kept."""
    actions, on_loop.committed = on_loop.committed, None
    for action in actions or ():
        action()


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` as psycopg 3 URLs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _loop_statements(url: str) -> LoopStatements | None:
    try:
        return LoopStatements(make_url(url), LOOP_POOL_SIZE)
    except ValueError as exc:  # options asyncpg cannot be given: psycopg runs them all
        log.warning("small flows' statements through psycopg: %s", exc)
        return None


def parse_url(url: str) -> URL:
    """``url`` parsed, or a usage error that names it with its password masked."""
    try:
        return make_url(normalise_url(url))
    except Exception as exc:  # ArgumentError for junk, ValueError for a port that is no number
        raise UsageError(f"not a database URL: {masked_url(normalise_url(url))!r}") from exc


def make_engine(url: str, **kwargs: Any) -> Engine:
    parsed = parse_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed, **kwargs)
    if backend == "postgresql":
        return _postgresql_engine(parsed, **kwargs)
    raise UsageError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


def _postgresql_engine(
    url: Any,
    cache_kib: int = 0,
    generic_plans: bool = False,
    mmap_mib: int = 0,  # SQLite's alone: PostgreSQL has its shared buffers
    **kwargs: Any,
) -> Engine:
    # Every worker process has its own pool: workers x (pool_size + max_overflow) must stay
    # below the server's max_connections (100 by default); requests beyond wait for a slot.
    kwargs.setdefault("pool_size", POSTGRES_POOL_SIZE)
    kwargs.setdefault("max_overflow", POSTGRES_MAX_OVERFLOW)
    # Survive a database restart or failover: a connection that may be gone is pinged on
    # checkout, one that is surely alive is not (``pg_liveness``; ``pool_pre_ping`` pinged
    # every one). ``pool_pre_ping=False`` turns both off.
    check_liveness = kwargs.pop("pool_pre_ping", True)
    kwargs.setdefault("pool_recycle", 1800)
    # JIT compiles any plan costing over 100000, which a large export does: that is tens to
    # hundreds of ms before the first row, for a streamed index scan that gains nothing.
    # ``generic_plans``: see ``STATEMENT_POOL_SIZE``.
    generic = "-c plan_cache_mode=force_generic_plan" if generic_plans else None
    options = " ".join(filter(None, [url.query.get("options"), "-c jit=off", generic]))
    connect_args: dict[str, Any] = {"application_name": "cdrgate", "options": options}
    # Only what the URL leaves out: connect_args would override the URL's own. A server gone
    # silent (no FIN, no RST) is found within ~30 s, not never (``pg_tcp``).
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = int(CONNECT_TIMEOUT_S)
    connect_args.update(pg_tcp.unset_defaults(url.query))
    connect_args.update(kwargs.pop("connect_args", {}))
    engine = create_engine(
        url.difference_update_query(["options"]), connect_args=connect_args, **kwargs
    )
    if check_liveness:
        ping_when_unsure(engine)
    return engine


def _sqlite_engine(
    url: Any,
    cache_kib: int = CACHE_KIB,
    on_loop: bool = False,
    mmap_mib: int = 0,  # a server's: the setting sqlite_mmap_mib (app.serving_database)
    **kwargs: Any,
) -> Engine:
    # on_loop: the event loop's connection must never wait, for the lock or to checkpoint.
    busy_s = 0 if on_loop else SQLITE_BUSY_TIMEOUT_S
    connect_args = {"timeout": busy_s, "check_same_thread": False, "factory": StoreConnection}
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
            *connection_settings(busy_s, cache_kib, mmap_mib),
            *(["wal_autocheckpoint=0"] if on_loop else []),
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()
        sqlite_interrupts.watch(dbapi_connection)

    if on_loop:
        return engine  # Database._open_batch issues its BEGIN IMMEDIATE itself

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("cdrgate_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Database:
    """One engine plus the helpers every storage module uses.

    ``replicas``: PostgreSQL streaming replicas of this (primary) database. Only export pages
    read there (``for_export``); everything else, writes and exact reads, uses the primary.
    """

    def __init__(
        self,
        url: str,
        *,
        replicas: Sequence[str] = (),
        max_replica_lag_ms: int = DEFAULT_MAX_REPLICA_LAG_MS,
        **engine_kwargs: Any,
    ) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url, **engine_kwargs)
        self._engine_kwargs = engine_kwargs
        self._export_engine: Engine | None = None
        self.dialect = self.engine.dialect.name
        # ``read(one_statement=True)``'s and ``autocommit()``'s connections on PostgreSQL: a
        # pool of their own, always in autocommit (see ``STATEMENT_POOL_SIZE``).
        self._one_statement = (
            make_engine(self.url, **self._statement_options())
            if self.dialect == "postgresql"
            else None
        )
        # A small flow's statements on the event loop through asyncpg (``storage/pg_loop.py``),
        # on ``LOOP_POOL_SIZE`` connections.
        self.loop_statements = _loop_statements(self.url) if self.dialect == "postgresql" else None
        self._replicas: ReplicaSet | None = None
        self._export_replica: Replica | None = None  # set on a view made by for_export
        if replicas:
            if self.dialect != "postgresql":
                raise UsageError("read replicas need a PostgreSQL primary database")
            options = replica_engine_options(self._export_options())
            self._replicas = ReplicaSet(
                [normalise_url(replica) for replica in replicas],
                lambda replica_url: make_engine(replica_url, **options),
                max_replica_lag_ms,
            )
        # SQLite has one writer at a time, and a writer that finds the lock taken sleeps in
        # the busy handler (up to 100 ms a try) instead of queueing: under concurrent requests
        # that made flows take seconds. Threads of this process queue here instead.
        self._sqlite_writer = threading.RLock() if self.dialect == "sqlite" else None
        self._file = _sqlite_file(self.engine)
        self._file_identity = _identity(self._file) if self._file else None
        self._loop_engine: Engine | None = None
        self._loop_conn: Connection | None = None
        self._loop_commits = 0
        # ``LOOP_WAL_HOLD_BYTES`` in the store's pages, read when the loop's connection opens
        # (the loop's writes are the only ones that count them).
        self._hold_frames = LOOP_WAL_HOLD_BYTES // 4096
        # The running checkpoint (one at a time), kept so it is not garbage-collected.
        self._checkpoint_task: asyncio.Future[tuple[int, int] | None] | None = None
        self._batch: _Batch | None = None  # the loop's open group commit
        # Requests waiting on the loop while it holds its writes for a checkpoint (None: not
        # holding); ``_held_pass``: that checkpoint has started.
        self._hold: list[asyncio.Future[None]] | None = None
        self._held_pass = False
        self._hold_loop: asyncio.AbstractEventLoop | None = None
        # Loop requests waiting for a thread of this process to release the writer lock.
        self._lock_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._lock_waiters_lock = threading.Lock()
        self._file_checked_at = -LOOP_FILE_CHECK_S
        self._file_lost: str | None = None  # set once for good: the file was deleted/replaced
        # The query API's share of the downloads' pool (``QUERY_READS``), shared with the
        # views ``for_export`` makes (a replica's pool is as small: the share holds there too).
        self._query_share = threading.BoundedSemaphore(QUERY_READS)
        self._query_wait_s = float(engine_kwargs.get("pool_timeout", QUERY_WAIT_S))

    @property
    def writes_on_loop(self) -> bool:
        """Whether ``run_on_loop`` can write without a thread: a SQLite file (a ``:memory:``
        database is one per connection, so the loop's own connection would not see it)."""
        return self._file is not None

    async def run_on_loop(
        self, call: Callable[[], T], *, if_cancelled: Callable[[T], Awaitable[None]] | None = None,
        if_lost: Callable[[T | None], Awaitable[None]] | None = None,
    ) -> T:  # fmt: skip
        """Run ``call`` on the event loop, its writes in the loop's group commit (``_Batch``):
        the write transaction on the loop's own connection that every request writing in this
        turn of the loop shares, if this process's writer lock is free and no other process
        holds SQLite's. Returns (or raises) what ``call`` did once that transaction has
        committed: nothing is answered before its writes are durable as any commit is. A
        failed commit raises StorageUnavailable for every request of the turn. A call that
        wrote nothing and read only one statement at a time answers with that commit too,
        or the next turn's, but a failure of it is not its own (``_alongside``).

        Waits on the loop, before ``call`` runs, while the loop holds its writes for a
        checkpoint (``LOOP_WAL_HOLD_BYTES``), and runs ``call`` again once a thread of this
        process that held the writer lock at its first write has released it. Raises
        WriterBusy, with nothing written, when that write would wait for another process's
        writer; the caller then runs ``call`` in a worker thread instead (so ``call`` must have
        no effect before its first write).

        ``if_cancelled``: given ``call``'s result when the request is cancelled while it waits
        for the group commit holding its writes, once that has committed (its writes stay,
        and nobody will use the result: a download's export, never sent); as
        ``api/threads.in_thread``'s.

        ``if_lost``: given ``call``'s result (None when it raised) when the group commit its
        answer waits for failed, so its writes are gone (a download's spend and audit record),
        before CommitFailed is raised; and the same for a request cancelled while it waits for
        that commit, before the cancel goes on (it will hear no CommitFailed), so whatever the
        lost writes stood for is done once either way.
        """
        while True:
            while self._hold is not None:  # a checkpoint is restarting the WAL
                if self._hold_loop is not asyncio.get_running_loop():
                    self._end_hold()  # held by a loop that has closed (tests run several)
                    continue
                await self._wait(self._hold)
            on_loop = _OnLoop()
            token = _ON_LOOP.set(on_loop)
            error: Exception | None = None
            result: T | None = None
            try:
                result = call()
            except _ThreadWriting:
                await self._writer_released()
                continue  # nothing was written: run it again, on the loop
            except WriterBusy:
                raise
            except Exception as exc:
                error = exc
            finally:
                _ON_LOOP.reset(token)
            break
        batch = on_loop.batch
        if batch is None and on_loop.alongside:
            await self._alongside()
        elif batch is not None and not batch.ended:
            try:
                await self._wait(batch.waiters)
            except CommitFailed:
                if if_lost is not None:
                    await if_lost(result)
                raise
            except asyncio.CancelledError:
                kept = None if error is not None else if_cancelled
                await self._ended_anyway(batch, on_loop, result, kept, if_lost)
                raise
        elif batch is not None and batch.error is not None:  # ended within ``call``
            if if_lost is not None:
                await if_lost(result)
            raise CommitFailed(str(batch.error))
        _run_committed(on_loop)
        if error is not None:
            raise error
        return result  # type: ignore[return-value]  # set: ``call`` returned

    async def _ended_anyway(
        self,
        batch: _Batch,
        on_loop: _OnLoop,
        result: T | None,
        if_cancelled: Callable[[T], Awaitable[None]] | None,
        if_lost: Callable[[T | None], Awaitable[None]] | None,
    ) -> None:
        """``run_on_loop``'s request was cancelled while its group commit was open: the commit
        goes on, and once it has ended, ``on_loop``'s ``on_commit`` actions and
        ``if_cancelled(result)`` when it committed (given only for a call that returned),
        ``if_lost(result)`` when it failed (the call's writes went with it). Shielded: the
        request's last work, which a second cancel (anyio's scopes cancel again at every turn
        of the loop) must not cut; the commit is the next turn's."""
        if if_cancelled is None and if_lost is None and not on_loop.committed:
            return  # nothing to do once it ends
        import anyio  # here: the CLI's commands load this module, and never get here

        with anyio.CancelScope(shield=True):
            if not batch.ended:
                with suppress(CommitFailed):
                    await self._wait(batch.waiters)
            if batch.error is None:
                _run_committed(on_loop)
                if if_cancelled is not None:
                    await if_cancelled(result)  # type: ignore[arg-type]  # ``call`` returned
            elif if_lost is not None:
                await if_lost(result)

    @staticmethod
    def on_commit(action: Callable[[], None]) -> None:
        """``action()`` once the writes made so far are committed: inside ``run_on_loop``'s
        call, when the group commit holding them has committed (never if it fails: the
        caller's ``if_lost`` stands for them then, nor if the call is run again); elsewhere
        at once (a thread's ``write()`` commits as its block ends, so call this after it).
        For what must count a write once it is kept, as the downloads' metrics do."""
        on_loop = _ON_LOOP.get()
        if on_loop is None:
            action()
        elif on_loop.committed is None:
            on_loop.committed = [action]
        else:
            on_loop.committed.append(action)

    @staticmethod
    def in_loop_call() -> bool:
        """Whether this runs inside ``run_on_loop`` (where nothing may wait for SQLite's lock)."""
        return _ON_LOOP.get() is not None

    @staticmethod
    async def _wait(waiters: list[asyncio.Future[None]]) -> None:
        # A future of its own: cancelling this request must not cancel the others' wait.
        waiter = asyncio.get_running_loop().create_future()
        waiters.append(waiter)
        await waiter

    async def _alongside(self) -> None:
        """Answer with the loop's group commit: the open one, or else the one the next turn
        opens, if any. For a call whose reads cannot depend on that commit (one statement
        each, ``read(one_statement=True)``), so its failure is not the call's.

        Its answer (a signed get_random's) is ready at once, but sent at once it leaves alone,
        between the bursts of answers the commits release, and costs the server more CPU a
        request than it saves (the loop's kernel time, the clients' wake-ups: bench/RESULTS.md,
        thirteenth round)."""
        batch = self._batch
        if batch is None:
            await asyncio.sleep(0)
            batch = self._batch
        if batch is not None and not batch.ended:
            with suppress(CommitFailed):
                await self._wait(batch.waiters)

    async def _writer_released(self) -> None:
        """Until a thread of this process releases the writer lock (``_writer_turn`` wakes
        the loop), awaited on the loop; as long as a thread's write would wait for it, then
        WriterBusy: the call goes the thread's way, whose write waits and, if the lock is
        still held, fails inside the call (a download's refusal is audited there)."""
        assert self._sqlite_writer is not None
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        with self._lock_waiters_lock:
            self._lock_waiters.append((loop, waiter))
        # Released before the waiter was listed: no wake will come for it.
        if self._sqlite_writer.acquire(blocking=False):
            self._sqlite_writer.release()
            return
        try:
            async with asyncio.timeout(SQLITE_BUSY_TIMEOUT_S):
                await waiter
        except TimeoutError:
            raise WriterBusy from None

    def _wake_lock_waiters(self) -> None:
        if not self._lock_waiters:
            return
        with self._lock_waiters_lock:
            waiting, self._lock_waiters = self._lock_waiters, []
        for loop, waiter in waiting:
            try:
                loop.call_soon_threadsafe(_wake, waiter)
            except RuntimeError:  # that loop has closed; its request is gone
                pass

    def checkpoint(self) -> tuple[int, int] | None:
        """A passive WAL checkpoint (it waits for no one): run in a worker thread. Returns the
        WAL's frames and those copied to the store (None when it failed). A failure is logged,
        not raised: the request that ran it has its answer already."""
        try:
            with _translate_errors(), self.engine.connect() as conn:
                row = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
        except StorageUnavailable as exc:
            log.warning("WAL checkpoint failed (the next one will retry): %s", exc)
            return None
        return int(row[1]), int(row[2])

    def _start_checkpoint(self) -> None:
        """A checkpoint in a worker thread once ``LOOP_CHECKPOINT_EVERY`` group commits have
        committed on the loop: no request waits for it (one did, before). One at a time: the
        next is due after this one ends. While the loop holds its writes, the held pass
        starts once the open group commit has committed (``LOOP_WAL_HOLD_BYTES``)."""
        if self._checkpoint_task is not None:
            return
        if self._hold is not None:
            if self._batch is not None:
                return  # its commit starts the held pass
            self._held_pass = True
        elif self._loop_commits < LOOP_CHECKPOINT_EVERY:
            return
        self._loop_commits = 0
        self._checkpoint_task = asyncio.get_running_loop().run_in_executor(None, self.checkpoint)
        self._checkpoint_task.add_done_callback(self._checkpoint_ended)

    def _checkpoint_ended(self, task: asyncio.Future[tuple[int, int] | None]) -> None:
        self._checkpoint_task = None
        frames = None
        if not task.cancelled() and task.exception() is not None:
            log.error("WAL checkpoint failed", exc_info=task.exception())
        elif not task.cancelled():
            frames = task.result()
        if self._hold is not None and self._held_pass:
            # Ended, whatever it did: a reader's snapshot or another process's writes can keep
            # a pass from copying all, and the loop must not wait on them; the next pass
            # tries again.
            self._end_hold()
        elif frames is not None and frames[0] >= self._hold_frames:
            self._hold, self._held_pass = [], False
            self._hold_loop = asyncio.get_running_loop()
            self._start_checkpoint()

    def _end_hold(self) -> None:
        hold, self._hold, self._held_pass = self._hold or [], None, False
        for waiter in hold:
            _wake(waiter)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def write(self, *, durable: bool = False) -> AbstractContextManager[Connection]:
        """A write transaction: committed on success, rolled back on any exception.

        ``durable``: the commit has reached the disk when the block ends. SQLite runs with
        ``synchronous=NORMAL`` (a commit survives a crash of cdrgate, not a power cut); a
        durable write is committed with ``synchronous=FULL``, for data acknowledged to a
        sender that then forgets it. PostgreSQL commits are durable unless the server runs
        ``synchronous_commit = off``; a durable write then commits with ``local``.
        """
        on_loop = _ON_LOOP.get()
        if on_loop is not None and not durable:
            return _LoopWrite(self, on_loop)
        return self._write(durable)

    @contextmanager
    def _write(self, durable: bool) -> Iterator[Connection]:
        self.check_file()
        # The pool first, then the writer lock: a thread waiting for a pooled connection must
        # not hold the lock every other writer of this process queues on.
        with _translate_errors(), self.engine.connect() as conn, self._writer_turn():
            conn.execution_options(cdrgate_write=True)
            if durable and self.is_sqlite:
                with _synchronous_full(conn), conn.begin():
                    yield conn
            elif durable:
                with conn.begin():
                    _flushed_commit(conn)
                    yield conn
            else:
                with conn.begin():
                    yield conn

    def _open_batch(self) -> _Batch:
        """BEGIN IMMEDIATE on the loop's connection, its commit scheduled for the next turn of
        the loop (so every request of this turn joins it); held: the process's writer lock."""
        assert self._sqlite_writer is not None
        loop = asyncio.get_running_loop()
        self._check_file_on_loop()
        if not self._sqlite_writer.acquire(blocking=False):
            raise _ThreadWriting
        try:
            with _translate_errors():
                conn = self._loop_connection()
                raw: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]
                try:
                    # On the driver itself: SQLAlchemy's begin event costs more than the BEGIN.
                    raw.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
                        raise WriterBusy from exc
                    raise StorageUnavailable(str(exc)) from exc
                batch = _Batch(conn.begin(), raw)  # its commit commits the driver's transaction
        except BaseException:
            self._sqlite_writer.release()
            raise
        self._batch = batch
        loop.call_soon(self._commit_batch, batch)
        return batch

    def _joined_batch(self) -> _Batch:
        """The loop's open group commit (opened now if none is), for a block to join."""
        batch = self._batch if self._batch is not None else self._open_batch()
        if not batch.raw.in_transaction:  # SQLite rolled it back itself (I/O error, disk full)
            raise StorageUnavailable("the loop's write transaction was rolled back")
        return batch

    def _commit_batch(self, batch: _Batch) -> None:
        """Commit the loop's group commit and answer its requests; a failed commit answers
        each with StorageUnavailable (30003). The writer lock is released either way."""
        if self._batch is not batch:
            return  # committed early (``_writer_turn`` on the loop's thread), or rolled back
        self._batch = None
        error: CommitFailed | None = None
        try:
            try:
                if not batch.raw.in_transaction:
                    raise StorageUnavailable("the loop's write transaction was rolled back")
                with _translate_errors():
                    batch.tx.commit()
            except Exception as exc:
                error = CommitFailed(str(exc).splitlines()[0])
                log.error("a group commit on the loop failed (%d requests): %s",
                          batch.writers, error)  # fmt: skip
                self._drop_loop_transaction(batch)
        finally:
            self._sqlite_writer.release()  # type: ignore[union-attr]
        self._answer_batch(batch, error)

    def _fail_batch(self, batch: _Batch, cause: BaseException) -> CommitFailed:
        """Roll back the open group commit now, as if its commit had failed: every request
        with writes in it answers 30003 (``_LoopWritesLast``: a block that raised after a
        write it has no SAVEPOINT to undo). Returns the error for the block to raise."""
        self._batch = None  # its scheduled commit then does nothing
        error = CommitFailed(str(cause).splitlines()[0] if str(cause) else type(cause).__name__)
        log.error("a group commit on the loop was rolled back (%d requests): %s",
                  batch.writers + 1, error)  # fmt: skip
        try:
            self._drop_loop_transaction(batch)
        finally:
            self._sqlite_writer.release()  # type: ignore[union-attr]
        self._answer_batch(batch, error)
        return error

    def _answer_batch(self, batch: _Batch, error: CommitFailed | None) -> None:
        batch.ended, batch.error = True, error
        for waiter in batch.waiters:
            if waiter.done():  # its request was cancelled
                continue
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(CommitFailed(str(error)))  # a traceback each
        if error is None:
            self._loop_commits += 1
        self._start_checkpoint()  # a held pass starts after a failed commit too

    def _drop_loop_transaction(self, batch: _Batch) -> None:
        try:
            batch.tx.rollback()  # also ends a transaction SQLAlchemy deactivated on failure
            if batch.raw.in_transaction:
                batch.raw.rollback()
        except Exception as exc:  # the connection is broken: the next batch opens another
            log.warning("dropping the loop's connection after a failed commit: %s", exc)
            if self._loop_conn is not None:
                self._loop_conn.invalidate()
                self._loop_conn.close()
                self._loop_conn = None

    def _loop_connection(self) -> Connection:
        # One connection, kept: it is used only while holding the writer lock.
        if self._loop_conn is None:
            options = {**self._engine_kwargs, "pool_size": 1, "max_overflow": 0}
            self._loop_engine = make_engine(self.url, on_loop=True, **options)
            self._loop_conn = self._loop_engine.connect()
            raw: sqlite3.Connection = self._loop_conn.connection.driver_connection  # type: ignore[assignment]
            (page_size,) = raw.execute("PRAGMA page_size").fetchone()  # the driver's: no BEGIN
            self._hold_frames = max(1, LOOP_WAL_HOLD_BYTES // page_size)
        return self._loop_conn

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """Queue behind this process's other SQLite writers, as long as SQLite itself would."""
        if self._sqlite_writer is None:
            yield
            return
        batch = self._batch
        if batch is not None and batch.thread == threading.get_ident():
            # A write on the loop's thread outside ``run_on_loop``: the lock is re-entrant
            # there, and this write would wait for ever on SQLite's, held by the loop's open
            # transaction; commit that first.
            self._commit_batch(batch)
        if not self._sqlite_writer.acquire(timeout=SQLITE_BUSY_TIMEOUT_S):
            raise StorageUnavailable("database is locked")
        try:
            yield
        finally:
            self._sqlite_writer.release()
            self._wake_lock_waiters()

    def writes_last(self) -> AbstractContextManager[Connection] | None:
        """Inside ``run_on_loop`` (a SQLite file): the loop's group commit itself, with no
        SAVEPOINT of the block's own (``_LoopWritesLast``), for a block whose reads all come
        first and whose writes are its last statements; None elsewhere (then ``write``)."""
        on_loop = _ON_LOOP.get()
        if on_loop is None or self._file is None:
            return None
        return _LoopWritesLast(self, on_loop)

    def read(self, *, one_statement: bool = False) -> AbstractContextManager[Connection]:
        """A read transaction (one consistent snapshot on both engines).

        Inside ``run_on_loop`` (a SQLite file), on the loop's own connection (``_LoopRead``):
        a pooled one costs a small read more than the read (the checkout, SQLAlchemy's BEGIN
        event, the hand-over between threads). ``one_statement``: a read of one statement whose
        answer is the same whether the loop's open group commit lands or not; on the loop it
        opens no transaction of its own, and a call whose reads are all such answers with the
        turn's group commit without failing with it (see ``_LoopRead``). On PostgreSQL it
        runs in autocommit: one statement is its own snapshot, and BEGIN and COMMIT around it
        were two round trips of its three."""
        on_loop = _ON_LOOP.get()
        if on_loop is not None and self._file is not None:
            return _LoopRead(self, on_loop, one_statement)
        if one_statement and self._one_statement is not None:
            return self._in_autocommit(self._one_statement)
        return self._read(self.engine)

    def autocommit(self) -> AbstractContextManager[Connection] | None:
        """A PostgreSQL connection in autocommit, every statement its own transaction: for a
        request whose statements need no transaction around them (a small download's, whose
        writes are one statement: ``storage/signed_spend.py``). None on SQLite, and with
        replicas (an export there waits for the position its redeem's transaction took)."""
        if self._one_statement is None or self._replicas is not None:
            return None
        return self._in_autocommit(self._one_statement)

    def loop_autocommit(self) -> LoopStatements | None:
        """``autocommit()``'s statements on the event loop (``storage/pg_loop.py``): None where
        ``autocommit()`` is None (SQLite, replicas)."""
        return None if self._replicas is not None else self.loop_statements

    async def close_on_loop(self) -> None:
        """Close the running loop's asyncpg pool, if it made one (the app's shutdown)."""
        if self.loop_statements is not None:
            await self.loop_statements.close()

    @contextmanager
    def _read(self, engine: Engine) -> Iterator[Connection]:
        with _translate_errors(), engine.connect() as conn, conn.begin():
            yield conn

    @staticmethod
    def _in_autocommit(engine: Engine) -> AbstractContextManager[Connection]:
        return _Autocommit(engine)

    @contextmanager
    def read_export(self) -> Iterator[Connection]:
        """A short read transaction on the downloads' own pool (see ``EXPORT_POOL_SIZE``)."""
        with _translate_errors(), self._primary_export().connect() as conn, conn.begin():
            yield conn

    def _export_options(self) -> dict[str, Any]:
        return {
            "pool_size": EXPORT_POOL_SIZE,
            "max_overflow": EXPORT_MAX_OVERFLOW,
            **self._engine_kwargs,
            "cache_kib": EXPORT_CACHE_KIB,
            # No memory map: a full export touches the whole file, and every mapped page it
            # touched would stay in the process's RSS (RssFile) for the export's length.
            "mmap_mib": 0,
        }

    def _statement_options(self) -> dict[str, Any]:
        return {
            "pool_size": STATEMENT_POOL_SIZE,
            "max_overflow": 0,
            **self._engine_kwargs,
            "isolation_level": "AUTOCOMMIT",
            "generic_plans": True,
        }

    def _primary_export(self) -> Engine:
        if self._export_engine is None:
            self._export_engine = make_engine(self.url, **self._export_options())
        return self._export_engine

    def wal_position(self, conn: Connection) -> str | None:
        """The primary's WAL position, for ``for_export`` after this write (None without
        replicas: then every read is on the primary anyway)."""
        return wal_position(conn) if self._replicas is not None else None

    def current_position(self) -> str | None:
        """``wal_position`` now: a read that must see every commit made before this call."""
        if self._replicas is None:
            return None
        with self.read() as conn:
            return wal_position(conn)

    def for_export(self, after: str | None) -> Database:
        """This database for one export: its ``export_read`` goes to a replica that has replayed
        ``after`` (a ``wal_position``), or to the primary when none can (or ``after`` is None).

        Chosen once per export, so its pages come from one place while that place is healthy.
        """
        if self._replicas is None or after is None:
            return self
        replica = self._replicas.choose(after)
        if replica is None:
            return self
        self._primary_export()  # made before the copy, so the view shares it (the fallback)
        view = copy.copy(self)
        view._export_replica = replica
        return view

    def export_read(self, read: Callable[[Connection], T]) -> T:
        """``read`` in a short read transaction on the export's replica, else the primary's
        export pool. A replica failing here is skipped and ``read`` runs again on the primary:
        a read has no effect to repeat, and the primary holds all the replica held."""
        replica = self._export_replica
        if replica is not None and self._replicas is not None and self._replicas.is_up(replica):
            try:
                with _translate_errors(), replica.engine.connect() as conn, conn.begin():
                    return read(conn)
            except (StorageUnavailable, DBAPIError) as exc:
                self._replicas.skip(replica, str(exc).splitlines()[0])
        try:
            with self.read_export() as conn:
                return read(conn)
        except StorageUnavailable as exc:
            if not _connection_lost(exc.__cause__):
                raise
        # Its connection was lost under the read (its backend ended: pg_terminate_backend, a
        # pooler, a restart): a read has no effect to repeat, so it runs once more on a new
        # connection, as the loop's reads do (``pg_loop``); a database still down fails again.
        with self.read_export() as conn:
            return read(conn)

    def query_read(self, read: Callable[[Connection], T]) -> T:
        """``export_read`` for the JSON query API, within its share of the downloads' pool
        (``QUERY_READS`` reads of this process at once): past it, a read waits for one of the
        share as long as for a pooled connection, then StorageUnavailable."""
        if not self._query_share.acquire(timeout=self._query_wait_s):
            raise StorageUnavailable("no database connection free (the query API's share)")
        try:
            return self.export_read(read)
        finally:
            self._query_share.release()

    def connections_in_use(self) -> int:
        """Pooled connections checked out now, downloads' pool included."""
        # The loop's one connection stays checked out by design: it holds no transaction
        # between turns of the loop (each group commit ends in the turn after it began).
        engines = [
            e for e in (self.engine, self._one_statement, self._export_engine) if e is not None
        ]
        return sum(e.pool.checkedout() for e in engines)  # type: ignore[attr-defined]

    def none_in_use(self) -> bool:
        """Whether no connection of this process is checked out, the event loop's included
        (only idle pooled ones are open: ``dispose`` closes them all)."""
        return self.connections_in_use() == 0 and self._loop_conn is None

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A bare connection (caller manages transactions), with storage errors translated."""
        with _translate_errors(), self.engine.connect() as conn:
            yield conn

    def check_file(self) -> None:
        """Refuse to go on when the SQLite file was deleted or replaced under this process.

        Open connections keep writing into the unlinked (or old) inode: every write would be
        lost on restart. Raises StorageUnavailable (30003, readyz fails) until a restart.
        """
        if self._file is None:
            return
        if self._file_lost is not None:
            raise StorageUnavailable(self._file_lost)
        current = _identity(self._file)
        if self._file_identity is None:  # created by the first connection after start-up
            self._file_identity = current
            return
        if current != self._file_identity:
            what = "deleted" if current is None else "replaced"
            log.error("database file %s was %s while in use: restart cdrgate", self._file, what)
            self._file_lost = f"database file {self._file} was {what} while in use"
            raise StorageUnavailable(self._file_lost)

    def _check_file_on_loop(self) -> None:
        """``check_file`` at most every ``LOOP_FILE_CHECK_S`` (a refusal, once, stays)."""
        now = time.monotonic()
        if self._file_lost is None and now - self._file_checked_at < LOOP_FILE_CHECK_S:
            return
        self._file_checked_at = now
        self.check_file()

    @property
    def sqlite_file(self) -> str | None:
        """The SQLite store's file (absolute), None for PostgreSQL or an in-memory or URI one."""
        return self._file

    def placeholder(self) -> str:
        """The driver's positional placeholder, for raw executemany on hot paths."""
        return "?" if self.engine.dialect.paramstyle == "qmark" else "%s"

    def dispose(self) -> None:
        if self._loop_conn is not None:
            self._loop_conn.close()
            self._loop_conn = None
        self.engine.dispose()
        for engine in (self._one_statement, self._export_engine, self._loop_engine):
            if engine is not None:
                engine.dispose()
        if self._replicas is not None:
            self._replicas.dispose()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():  # its request was cancelled
        waiter.set_result(None)


def _flushed_commit(conn: Connection) -> None:
    """A PostgreSQL server (or its role or database) set to ``synchronous_commit = off``
    answers a commit before its WAL is flushed: a crash then loses acknowledged pushes. Only
    ``off`` is raised, for this transaction, to ``local`` (flushed here); a setting that
    waits for standbys as well is kept."""
    conn.exec_driver_sql(
        "SELECT set_config('synchronous_commit', 'local', true) "
        "WHERE current_setting('synchronous_commit') = 'off'"
    )


@contextmanager
def _synchronous_full(conn: Connection) -> Iterator[None]:
    # SQLite refuses to change the level inside a transaction: set it on the raw
    # (autocommit) connection before BEGIN, and restore it before the pool gets it back.
    raw = conn.connection.driver_connection
    assert raw is not None
    previous = int(raw.execute("PRAGMA synchronous").fetchone()[0])
    raw.execute("PRAGMA synchronous=FULL")
    try:
        yield
    finally:
        raw.execute(f"PRAGMA synchronous={previous}")


def _sqlite_file(engine: Engine) -> str | None:
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return os.path.abspath(database)


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


@contextmanager
def _translate_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        error = _storage_error(exc)
        if error is None:
            raise
        raise error from exc


def _storage_error(exc: BaseException) -> StorageUnavailable | None:
    """The StorageUnavailable that ``exc`` means (the database cannot be used), or None when
    ``exc`` is to be raised as it is."""
    if isinstance(exc, PoolTimeout):
        # Every pooled connection is busy: the same answer as a database that is down.
        return StorageUnavailable("no database connection free (pool exhausted)")
    if isinstance(exc, OperationalError):
        return StorageUnavailable(_short(exc))
    if isinstance(exc, sqlite3.OperationalError):  # run on the driver (storage/driver.py)
        return _driver_error(exc)
    # psycopg's own, from a statement run on the driver: looked up, not imported, as a
    # SQLite-only process never loads psycopg (and then cannot have raised its errors).
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(exc, psycopg.OperationalError):
        return StorageUnavailable(str(exc).splitlines()[0])
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return StorageUnavailable(_short(exc))
    if isinstance(exc, DBAPIError) and _not_a_store_file(exc.orig):
        # --database naming a file that is no SQLite database (or a damaged one): SQLite's
        # words, as one line, not a traceback.
        return StorageUnavailable(_short(exc))
    return None


def _not_a_store_file(exc: BaseException | None) -> bool:
    return isinstance(exc, sqlite3.DatabaseError) and exc.sqlite_errorcode & 0xFF in (
        sqlite3.SQLITE_NOTADB,
        sqlite3.SQLITE_CORRUPT,
    )


def _connection_lost(exc: BaseException | None) -> bool:
    """``exc`` (a StorageUnavailable's cause) lost its PostgreSQL connection under a statement:
    SQLAlchemy invalidated it (not a pool timeout, nor a statement the server cancelled)."""
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _driver_error(exc: sqlite3.OperationalError) -> StorageUnavailable:
    return StorageUnavailable(str(exc).splitlines()[0])


class _Autocommit:
    """``Database.autocommit()`` and ``read(one_statement=True)`` on PostgreSQL: a connection of
    the statements' pool (always in autocommit), closed on exit, errors translated as
    ``_translate_errors`` does. No ``conn.begin()``: in autocommit its BEGIN and COMMIT reach
    no database, but the calls through SQLAlchemy and psycopg cost ~100 us of CPU a block
    (seventeenth round); a Core statement run in the block still autobegins, and the rollback
    at close changes nothing either.

    A class, not a generator, as ``_LoopWrite``: every request of a PostgreSQL flow opens one,
    and the two nested generator context managers it replaced were 10 of an empty block's 71
    Python calls (bench/RESULTS.md, twentieth round)."""

    __slots__ = ("conn", "engine")
    conn: Connection  # set on entry

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __enter__(self) -> Connection:
        try:
            self.conn = self.engine.connect()
        except Exception as exc:
            error = _storage_error(exc)
            if error is None:
                raise
            raise error from exc
        return self.conn

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object
    ) -> None:
        try:
            self.conn.close()
        except Exception as closing:
            error = _storage_error(closing)
            if error is None:
                raise
            raise error from closing
        if isinstance(exc, Exception):
            translated = _storage_error(exc)
            if translated is not None:
                raise translated from exc


class _LoopWrite:
    """``Database.write`` inside ``run_on_loop``: a SAVEPOINT in the loop's group commit
    (opened on entry if none is), or WriterBusy at once when it cannot start. An exception
    rolls back this block's writes only, and is translated as ``_translate_errors`` does.

    A class, not a generator: every request of a small flow writes once, and the three
    nested generator context managers this replaced (``write``, the savepoint block,
    ``_translate_errors``) cost more than its SAVEPOINT and RELEASE (4.2 -> 1.8 us a block).
    """

    __slots__ = ("batch", "db", "on_loop")
    batch: _Batch  # set on entry

    def __init__(self, db: Database, on_loop: _OnLoop) -> None:
        self.db, self.on_loop = db, on_loop

    def __enter__(self) -> Connection:
        self.batch = batch = self.db._joined_batch()
        raw = batch.raw
        # One fixed name: the same SQL text each time, so sqlite3's statement cache hits
        # (a name per request compiled all three statements again). Names need not be
        # unique: ROLLBACK TO and RELEASE act on the newest savepoint of that name, which
        # is this block's even if one were nested in another.
        try:
            raw.execute("SAVEPOINT w")
        except sqlite3.OperationalError as error:
            raise _driver_error(error) from error
        return batch.tx.connection

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object
    ) -> None:
        batch = self.batch
        raw = batch.raw
        # On the driver, so only its errors can arise here (no _translate_errors: a generator
        # context manager costs more than these statements).
        try:
            if exc is None:
                raw.execute("RELEASE w")
            elif raw.in_transaction:
                raw.execute("ROLLBACK TO w")
                raw.execute("RELEASE w")
        except sqlite3.OperationalError as error:
            raise _driver_error(error) from error
        if exc is not None:
            translated = _storage_error(exc)
            if translated is not None:
                raise translated from exc
            return  # raised on as it is
        on_loop = self.on_loop
        if not on_loop.wrote:
            on_loop.wrote, on_loop.batch = True, batch
            batch.writers += 1


class _LoopWritesLast:
    """``Database.writes_last`` inside ``run_on_loop``: the block's statements run in the
    loop's group commit (opened on entry if none is) without the SAVEPOINT and RELEASE a
    ``_LoopWrite`` puts around them: two statements of a small download's six, and SQLite's
    savepoint work (its sub-journal copies of the pages the batch's writes touch again).

    What the savepoint is for: a request that raises after a write must leave none of its
    writes in the group commit (a download refused after its spend must not leave the random
    spent). Here an exception undoes the block's writes only if it wrote nothing: one that
    raises after a write (the connection's change count moved) rolls back the whole group
    commit (``Database._fail_batch``), and every request in it answers 30003, as when its
    commit fails. So the block must do its reads first and raise nothing of its own after
    its first write; then only a failing statement (the disk, the file) ends that way, and
    such a failure would most likely have failed the commit too. Its reads see the other
    requests' writes of the turn, so its answer waits for that commit, as ``_LoopRead``'s."""

    __slots__ = ("batch", "changes", "db", "on_loop")
    batch: _Batch  # set on entry
    changes: int

    def __init__(self, db: Database, on_loop: _OnLoop) -> None:
        self.db, self.on_loop = db, on_loop

    def __enter__(self) -> Connection:
        self.batch = batch = self.db._joined_batch()
        self.changes = batch.raw.total_changes
        if self.on_loop.batch is None:
            self.on_loop.batch = batch
        return batch.tx.connection

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object
    ) -> None:
        batch = self.batch
        wrote = batch.raw.total_changes != self.changes
        if exc is None:
            on_loop = self.on_loop
            if wrote and not on_loop.wrote:
                on_loop.wrote = True
                batch.writers += 1
            return
        if wrote and not batch.ended:
            error = self.db._fail_batch(batch, exc)
            if not isinstance(exc, Exception):
                return  # KeyboardInterrupt and the like go on as they are
            raise error from exc
        translated = _storage_error(exc)
        if translated is not None:
            raise translated from exc


class _LoopRead:
    """``Database.read`` inside ``run_on_loop``: a read on the loop's connection, which takes
    no writer lock and enters no group commit.

    With no group commit open: its own deferred transaction, ended on exit (only committed
    rows are seen). With one open (other requests wrote in this turn of the loop): read in
    that transaction, which may hold their uncommitted writes, so this call's answer waits
    for that commit as theirs do (``_OnLoop.batch``): no answer rests on rows that a failed
    commit would take back. Unless ``one_statement``: a read of one statement whose answer
    is the same whether those writes commit or not (a token's check: the only write to a
    token on the loop is its sliding mark, moved only while the token is live) does not
    depend on that commit, and a request that then writes nothing (a signed get_random)
    answers with the turn's group commit but never fails with it (``Database._alongside``);
    with no group commit open, its statement runs alone, which SQLite gives a snapshot of its
    own (BEGIN and COMMIT around it cost as much as the read, in the profile). The loop's
    connection is only used from the loop's thread, one call at a time, and no read holds a
    transaction past its block.

    SQLite may answer a WAL reader busy (rarely: while another connection recovers or resets
    the WAL) and this connection has no busy timeout (the loop must not sleep): that is
    WriterBusy, so the caller runs the whole call again in a thread (nothing is written yet
    when a call's first statement is this read: ``run_on_loop``'s rule).
    """

    __slots__ = ("db", "on_loop", "one_statement", "raw")

    def __init__(self, db: Database, on_loop: _OnLoop, one_statement: bool) -> None:
        self.db, self.on_loop, self.one_statement = db, on_loop, one_statement
        self.raw: sqlite3.Connection | None = None  # set when reading outside a group commit

    def __enter__(self) -> Connection:
        batch = self.db._batch
        if self.one_statement:
            self.on_loop.alongside = True
        if batch is not None:
            if self.on_loop.batch is None and not self.one_statement:
                self.on_loop.batch = batch
            return batch.tx.connection
        with _translate_errors():
            conn = self.db._loop_connection()
        raw: sqlite3.Connection = conn.connection.driver_connection  # type: ignore[assignment]
        if not self.one_statement:
            try:
                raw.execute("BEGIN")
            except sqlite3.OperationalError as error:
                raise _driver_error(error) from error
        self.raw = raw
        return conn

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object
    ) -> None:
        raw = self.raw
        if raw is not None and raw.in_transaction:
            try:
                raw.execute("COMMIT" if exc is None else "ROLLBACK")
            except sqlite3.OperationalError as error:
                raise _driver_error(error) from error
        if exc is None:
            return
        if (
            isinstance(exc, sqlite3.OperationalError)
            and exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
            and raw is not None
            and not self.on_loop.wrote
        ):
            raise WriterBusy from exc
        translated = _storage_error(exc)
        if translated is not None:
            raise translated from exc


def _short(exc: DBAPIError) -> str:
    return str(exc.orig).splitlines()[0] if exc.orig is not None else str(exc)
