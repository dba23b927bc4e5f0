"""Write transactions run on the event loop (``Database.run_on_loop``): they never wait for a
lock there, leave nothing behind when they cannot start, and keep the WAL checkpointed."""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import pytest

from cdrgate.errors import StorageUnavailable
from cdrgate.services import stores
from cdrgate.storage import db as db_module
from cdrgate.storage import schema
from cdrgate.storage.db import (
    LOOP_CHECKPOINT_EVERY,
    CommitFailed,
    Database,
    WriterBusy,
)


@pytest.fixture
def file_db(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'loop.db'}")
    schema.upgrade(db)
    with db.write() as conn:
        conn.exec_driver_sql("CREATE TABLE probe (x INTEGER)")
    yield db
    db.dispose()


def _insert(db: Database, value: int) -> None:
    with db.write() as conn:
        conn.exec_driver_sql(f"INSERT INTO probe VALUES ({value})")


def _on_loop(db: Database, call: Callable[[], object]) -> object:
    return asyncio.run(db.run_on_loop(call))


def _values(db: Database) -> list[int]:
    with db.read() as conn:
        return [row[0] for row in conn.exec_driver_sql("SELECT x FROM probe ORDER BY x")]


def test_a_write_on_the_loop_commits_like_any_other(file_db):
    _on_loop(file_db, lambda: _insert(file_db, 1))
    assert _values(file_db) == [1]


@contextmanager
def _thread_writing(db: Database, release: threading.Event) -> Iterator[None]:
    """A thread of this process inside a write (it inserted 1) until ``release`` is set."""
    inside = threading.Event()

    def hold() -> None:
        with db.write() as conn:
            conn.exec_driver_sql("INSERT INTO probe VALUES (1)")
            inside.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    inside.wait()
    try:
        yield
    finally:
        release.set()
        holder.join()


def test_a_write_on_the_loop_waits_on_the_loop_while_a_thread_of_this_process_writes(file_db):
    """Not sent to a thread (whose write would hold the lock for the loop's next one, and so
    on): it waits without blocking the loop, then runs again and commits there."""
    release = threading.Event()
    ran_in: list[int] = []

    def write() -> None:
        ran_in.append(threading.get_ident())
        _insert(file_db, 2)

    async def scenario() -> None:
        request = asyncio.ensure_future(file_db.run_on_loop(write))
        for _ in range(10):  # the loop keeps running other work meanwhile
            await asyncio.sleep(0)
        assert not request.done()
        release.set()
        await request

    with _thread_writing(file_db, release):
        asyncio.run(scenario())
    assert _values(file_db) == [1, 2]
    assert ran_in == [threading.get_ident()] * 2  # refused once, then run on the loop


def test_a_write_on_the_loop_waits_no_longer_for_a_thread_than_a_thread_would(file_db, monkeypatch):
    """A thread's write that holds the lock past the busy timeout: the loop's write is then
    handed to the thread path (WriterBusy, nothing written), not left waiting; there the
    call's own write waits and fails as storage unavailable (30003), inside the call, where a
    download audits its refusal."""
    monkeypatch.setattr(db_module, "SQLITE_BUSY_TIMEOUT_S", 0.2)
    release = threading.Event()
    with _thread_writing(file_db, release):
        threading.Timer(2.0, release.set).start()  # the thread's write ends, in any case
        with pytest.raises(WriterBusy):
            _on_loop(file_db, lambda: _insert(file_db, 2))
        with pytest.raises(StorageUnavailable, match="locked"):
            _insert(file_db, 2)  # the thread's way: its write waits as long, then fails
    assert _values(file_db) == [1]
    _on_loop(file_db, lambda: _insert(file_db, 3))  # the lock is free again
    assert _values(file_db) == [1, 3]


def test_a_write_on_the_loop_is_busy_at_once_while_another_process_writes(file_db, tmp_path):
    other = sqlite3.connect(tmp_path / "loop.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # as another process's writer would
    try:
        with pytest.raises(WriterBusy):
            _on_loop(file_db, lambda: _insert(file_db, 1))
    finally:
        other.execute("ROLLBACK")
        other.close()
    _on_loop(file_db, lambda: _insert(file_db, 2))  # the loop's connection is usable again
    assert _values(file_db) == [2]


def test_only_the_first_write_of_a_call_on_the_loop_may_be_busy(file_db):
    """Running the call again would repeat its first write: a later one joins its transaction."""

    def two_writes() -> None:
        _insert(file_db, 1)
        _insert(file_db, 2)

    _on_loop(file_db, two_writes)
    assert _values(file_db) == [1, 2]


def test_a_durable_write_after_a_write_on_the_loop_commits_the_shared_transaction_first(file_db):
    """A durable write cannot join the loop's transaction; it must not wait on its lock."""

    def both() -> None:
        _insert(file_db, 1)
        with file_db.write(durable=True) as conn:
            conn.exec_driver_sql("INSERT INTO probe VALUES (2)")

    _on_loop(file_db, both)
    assert _values(file_db) == [1, 2]


def test_a_failed_write_on_the_loop_rolls_back_and_frees_the_lock(file_db):
    def failing() -> None:
        with file_db.write() as conn:
            conn.exec_driver_sql("INSERT INTO probe VALUES (1)")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        _on_loop(file_db, failing)
    _on_loop(file_db, lambda: _insert(file_db, 2))
    assert _values(file_db) == [2]


async def _together(*calls: Awaitable[object]) -> list[object]:
    """Each as its own request (task), all started in one turn of the loop."""
    return await asyncio.gather(*calls, return_exceptions=True)


def test_requests_writing_in_one_turn_of_the_loop_all_commit_before_any_answers(file_db):
    async def request(value: int) -> list[int]:
        await file_db.run_on_loop(lambda: _insert(file_db, value))
        return _values(file_db)  # read on another connection, as a client would next

    answers = asyncio.run(_together(*(request(value) for value in (1, 2, 3))))
    assert answers == [[1, 2, 3]] * 3


def test_a_request_that_fails_in_a_shared_transaction_rolls_back_only_its_own_writes(file_db):
    def failing() -> None:
        with file_db.write() as conn:
            conn.exec_driver_sql("INSERT INTO probe VALUES (2)")
            raise RuntimeError("boom")

    answers = asyncio.run(
        _together(
            file_db.run_on_loop(lambda: _insert(file_db, 1)),
            file_db.run_on_loop(failing),
            file_db.run_on_loop(lambda: _insert(file_db, 3)),
        )
    )
    assert answers[0] is None and answers[2] is None
    assert isinstance(answers[1], RuntimeError)
    assert _values(file_db) == [1, 3]


def test_a_database_error_in_a_write_on_the_loop_is_storage_unavailable_and_rolled_back(file_db):
    def failing() -> None:
        with file_db.write() as conn:
            conn.exec_driver_sql("INSERT INTO probe VALUES (2)")
            raw = conn.connection.driver_connection
            raw.execute("INSERT INTO no_such_table VALUES (1)")  # on the driver, as hot paths

    answers = asyncio.run(
        _together(file_db.run_on_loop(lambda: _insert(file_db, 1)), file_db.run_on_loop(failing))
    )
    assert answers[0] is None
    assert isinstance(answers[1], StorageUnavailable)
    assert isinstance(answers[1].__cause__, sqlite3.OperationalError)
    assert _values(file_db) == [1]


def _writes_last(db: Database, value: int, then: BaseException | None = None) -> int:
    """A block without a SAVEPOINT of its own: a read, then an insert of ``value`` (none when
    ``value`` is 0), then ``then`` raised, if given."""
    statements = db.writes_last()
    assert statements is not None, "on the loop"
    with statements as conn:
        count = int(conn.exec_driver_sql("SELECT count(*) FROM probe").scalar_one())
        if value:
            conn.exec_driver_sql(f"INSERT INTO probe VALUES ({value})")
        if then is not None:
            raise then
    return count


def test_a_block_writing_last_on_the_loop_runs_no_savepoint_and_commits_with_its_turn(file_db):
    _on_loop(file_db, lambda: _insert(file_db, 1))  # the loop's connection is open from here
    assert file_db._loop_conn is not None
    statements: list[str] = []
    file_db._loop_conn.connection.dbapi_connection.set_trace_callback(statements.append)
    answers = asyncio.run(
        _together(
            file_db.run_on_loop(lambda: _insert(file_db, 2)),
            file_db.run_on_loop(lambda: _writes_last(file_db, 3)),
        )
    )
    assert answers == [None, 2]  # its read saw the turn's other write
    assert _values(file_db) == [1, 2, 3]
    assert statements == [
        "BEGIN IMMEDIATE", "SAVEPOINT w", "INSERT INTO probe VALUES (2)", "RELEASE w",
        "SELECT count(*) FROM probe", "INSERT INTO probe VALUES (3)", "COMMIT",
    ]  # fmt: skip


def test_a_block_writing_last_that_raises_after_its_write_fails_its_whole_group_commit(file_db):
    answers = asyncio.run(
        _together(
            file_db.run_on_loop(lambda: _insert(file_db, 1)),
            file_db.run_on_loop(lambda: _writes_last(file_db, 2, RuntimeError("boom"))),
            file_db.run_on_loop(lambda: _insert(file_db, 3)),
        )
    )
    # No SAVEPOINT to undo its write alone: every request of the commit hears it failed.
    assert all(isinstance(answer, CommitFailed) for answer in answers[:2])
    assert str(answers[1]) == "boom"
    assert answers[2] is None  # the next write opened a group commit of its own
    assert _values(file_db) == [3]
    _insert(file_db, 4)  # the writer lock was released
    _on_loop(file_db, lambda: _writes_last(file_db, 5))
    assert _values(file_db) == [3, 4, 5]


def test_a_block_writing_last_interrupted_after_its_write_fails_its_group_commit_and_goes_on(
    file_db,
):
    with pytest.raises(KeyboardInterrupt):
        _on_loop(file_db, lambda: _writes_last(file_db, 1, KeyboardInterrupt()))
    assert _values(file_db) == []
    _on_loop(file_db, lambda: _writes_last(file_db, 2))  # the writer lock was released
    assert _values(file_db) == [2]


def test_a_block_writing_last_that_raises_before_any_write_fails_alone(file_db):
    answers = asyncio.run(
        _together(
            file_db.run_on_loop(lambda: _insert(file_db, 1)),
            file_db.run_on_loop(lambda: _writes_last(file_db, 0, RuntimeError("refused"))),
        )
    )
    assert answers[0] is None
    assert isinstance(answers[1], RuntimeError)
    assert _values(file_db) == [1]


def test_outside_the_loop_there_is_no_block_writing_last(file_db):
    assert file_db.writes_last() is None  # the caller writes in a transaction of its own


def _orphan_writer(db: Database, *also: str) -> Callable[[], None]:
    """A write whose COMMIT fails (a deferred foreign key is checked then only), after
    ``also`` (statements run first in its transaction)."""
    with db.write() as conn:
        conn.exec_driver_sql("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("CREATE TABLE child (parent INTEGER REFERENCES parent (id))")

    def orphan() -> None:
        with db.write() as conn:
            conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
            for statement in also:
                conn.exec_driver_sql(statement)
            conn.exec_driver_sql("INSERT INTO child VALUES (99)")

    return orphan


def test_a_failed_shared_commit_fails_every_request_of_it_and_frees_the_writer(file_db):
    orphan = _orphan_writer(file_db)
    answers = asyncio.run(
        _together(
            file_db.run_on_loop(lambda: _insert(file_db, 1)),
            file_db.run_on_loop(orphan),
        )
    )
    assert all(isinstance(answer, CommitFailed) for answer in answers)
    assert _values(file_db) == []
    _insert(file_db, 2)  # a thread's writer is not left waiting on the lock
    _on_loop(file_db, lambda: _insert(file_db, 3))  # nor is the loop's next request
    assert _values(file_db) == [2, 3]


def _count_in_one_statement(db: Database) -> int:
    with db.read(one_statement=True) as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM probe").scalar_one())


def test_a_call_reading_one_statement_answers_with_the_turns_group_commit(file_db):
    # Answered alone, at once, it cost the server more than it saved (thirteenth round).
    async def reader() -> list[int]:
        await file_db.run_on_loop(lambda: _count_in_one_statement(file_db))
        return _values(file_db)  # on another connection: only committed rows

    answers = asyncio.run(_together(file_db.run_on_loop(lambda: _insert(file_db, 1)), reader()))
    assert answers == [None, [1]]


def test_a_call_reading_one_statement_alone_on_the_loop_is_answered(file_db):
    assert _on_loop(file_db, lambda: _count_in_one_statement(file_db)) == 0


def test_a_failed_group_commit_does_not_fail_a_call_that_only_waited_for_it(file_db):
    orphan = _orphan_writer(file_db, "INSERT INTO probe VALUES (1)")
    answers = asyncio.run(
        _together(
            file_db.run_on_loop(orphan),
            file_db.run_on_loop(lambda: _count_in_one_statement(file_db)),
        )
    )
    assert isinstance(answers[0], CommitFailed)
    assert isinstance(answers[1], int)  # its own answer, not the commit's failure


def test_once_the_store_file_is_found_replaced_writes_on_the_loop_are_refused_too(
    file_db, tmp_path
):
    """The loop looks at the file less often than every write; a refusal, once, stays."""
    _on_loop(file_db, lambda: _insert(file_db, 1))
    shutil.copy(tmp_path / "loop.db", tmp_path / "other.db")
    os.replace(tmp_path / "other.db", tmp_path / "loop.db")
    with pytest.raises(StorageUnavailable, match="replaced"):
        _insert(file_db, 2)
    with pytest.raises(StorageUnavailable, match="replaced"):
        _on_loop(file_db, lambda: _insert(file_db, 3))


def test_the_wal_stays_bounded_when_every_write_runs_on_the_loop(file_db, tmp_path):
    """The loop's connection never checkpoints at commit; a due one runs in a worker thread
    (each ``asyncio.run`` waits for its executor's threads before it returns)."""
    wal = tmp_path / "loop.db-wal"

    def writes(count: int) -> None:
        for value in range(count):
            _on_loop(file_db, functools.partial(_insert, file_db, value))

    writes(2 * LOOP_CHECKPOINT_EVERY)
    plateau = os.path.getsize(wal)
    writes(4 * LOOP_CHECKPOINT_EVERY)
    # Without the checkpoints the WAL would have tripled; with them it is reused from the start.
    assert os.path.getsize(wal) <= plateau


# Hundreds of group commits of 64 KiB writes each: ~50 MiB through the WAL per run, three
# times what it may hold before the loop restarts it.
BLOB = 64 * 1024
# The hold's threshold (16 MiB), what the loop writes while the pass that finds it runs,
# and the size limit a restarted WAL is truncated to.
WAL_BOUND = 40 * 2**20


def _sustained_writes(db: Database, wal, writers: int = 4, each: int = 200) -> int:
    """``writers`` requests writing on the loop back to back, each as soon as its last
    commit answered (no pause for a checkpoint in a thread to end on its own); returns the
    largest WAL file seen after a commit."""
    largest = 0

    def write() -> None:
        with db.write() as conn:
            conn.exec_driver_sql("INSERT INTO blob VALUES (randomblob(?))", (BLOB,))

    async def writer() -> None:
        nonlocal largest
        for _ in range(each):
            await db.run_on_loop(write)
            largest = max(largest, os.path.getsize(wal))

    async def all_writers() -> None:
        await asyncio.gather(*(writer() for _ in range(writers)))

    asyncio.run(all_writers())
    return largest


@pytest.fixture
def blob_db(file_db):
    with file_db.write() as conn:
        conn.exec_driver_sql("CREATE TABLE blob (data BLOB)")
    return file_db


def _blobs(db: Database) -> int:
    with db.read() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM blob").scalar_one())


def test_the_wal_stays_bounded_under_continuous_writes_on_the_loop(blob_db, tmp_path):
    """A passive checkpoint never catches up with a loop that always writes; the loop holds
    its writes for one pass when the WAL is large, so the next write restarts it."""
    largest = _sustained_writes(blob_db, tmp_path / "loop.db-wal")
    assert _blobs(blob_db) == 4 * 200
    assert largest <= WAL_BOUND < 4 * 200 * BLOB  # ~50 MiB written in all


def test_the_wal_bound_holds_on_a_store_of_16_kib_pages(tmp_path):
    """The hold's threshold is bytes, not frames: a store made by ``open_or_create`` has
    16 KiB pages, and a threshold of 4096 frames let its WAL reach 64 MiB."""
    db = stores.open_or_create(f"sqlite:///{tmp_path / 'loop.db'}").db
    try:
        with db.read() as conn:
            assert conn.exec_driver_sql("PRAGMA page_size").scalar_one() == 16384
        with db.write() as conn:
            conn.exec_driver_sql("CREATE TABLE blob (data BLOB)")
        largest = _sustained_writes(db, tmp_path / "loop.db-wal")
        assert _blobs(db) == 4 * 200
    finally:
        db.dispose()
    assert largest <= WAL_BOUND


def test_a_long_reader_does_not_stall_writers_and_the_wal_is_bounded_once_it_ends(
    blob_db, tmp_path
):
    wal = tmp_path / "loop.db-wal"
    reader = sqlite3.connect(tmp_path / "loop.db", isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM blob").fetchone() == (0,)  # its snapshot
    try:
        pinned = _sustained_writes(blob_db, wal)
        assert _blobs(blob_db) == 4 * 200  # every writer committed
        assert reader.execute("SELECT count(*) FROM blob").fetchone() == (0,)
    finally:
        reader.execute("ROLLBACK")
        reader.close()
    assert pinned > WAL_BOUND  # no checkpoint can pass the snapshot, so the WAL grew
    # Restarted, and truncated to the size limit, by the writes that follow. Each run is an
    # event loop of its own that ends with its writers: on a slow disk the pass copying the
    # snapshot's backlog (~55 MiB) outlasts the first run's writes, and the held pass it
    # asks for can no longer start once that loop has closed (a server's loop lives on).
    # The next run's first write then restarts the WAL. Bounded: a WAL that stays pinned
    # after the reader has gone fails here.
    sizes = []
    for _ in range(3):
        _sustained_writes(blob_db, wal)
        sizes.append(os.path.getsize(wal))
        if sizes[-1] <= WAL_BOUND:
            break
    assert sizes[-1] <= WAL_BOUND, sizes
