"""Write transactions run on the event loop (``Database.run_on_loop``): they never wait for a
lock there, leave nothing behind when they cannot start, and keep the WAL checkpointed."""

from __future__ import annotations

import os
import sqlite3
import threading

import pytest

from cdrgate.storage import schema
from cdrgate.storage.db import LOOP_CHECKPOINT_EVERY, Database, WriterBusy


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


def _values(db: Database) -> list[int]:
    with db.read() as conn:
        return [row[0] for row in conn.exec_driver_sql("SELECT x FROM probe ORDER BY x")]


def test_a_write_on_the_loop_commits_like_any_other(file_db):
    file_db.run_on_loop(lambda: _insert(file_db, 1))
    assert _values(file_db) == [1]


def test_a_write_on_the_loop_is_busy_at_once_while_a_thread_of_this_process_writes(file_db):
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with file_db.write():
            inside.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    inside.wait()
    try:
        with pytest.raises(WriterBusy):
            file_db.run_on_loop(lambda: _insert(file_db, 1))
    finally:
        release.set()
        holder.join()
    assert _values(file_db) == []  # nothing written: the caller may run it again in a thread


def test_a_write_on_the_loop_is_busy_at_once_while_another_process_writes(file_db, tmp_path):
    other = sqlite3.connect(tmp_path / "loop.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # as another process's writer would
    try:
        with pytest.raises(WriterBusy):
            file_db.run_on_loop(lambda: _insert(file_db, 1))
    finally:
        other.execute("ROLLBACK")
        other.close()
    file_db.run_on_loop(lambda: _insert(file_db, 2))  # the loop's connection is usable again
    assert _values(file_db) == [2]


def test_only_the_first_write_of_a_call_on_the_loop_may_be_busy(file_db):
    """After a commit, running the call again would repeat it: a later write waits instead."""

    def two_writes() -> None:
        _insert(file_db, 1)
        _insert(file_db, 2)

    file_db.run_on_loop(two_writes)
    assert _values(file_db) == [1, 2]


def test_a_failed_write_on_the_loop_rolls_back_and_frees_the_lock(file_db):
    def failing() -> None:
        with file_db.write() as conn:
            conn.exec_driver_sql("INSERT INTO probe VALUES (1)")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        file_db.run_on_loop(failing)
    file_db.run_on_loop(lambda: _insert(file_db, 2))
    assert _values(file_db) == [2]


def test_the_wal_stays_bounded_when_every_write_runs_on_the_loop(file_db, tmp_path):
    """The loop's connection never checkpoints at commit; ``checkpoint_due`` asks for one."""
    wal = tmp_path / "loop.db-wal"

    def writes(count: int) -> None:
        for value in range(count):
            file_db.run_on_loop(lambda value=value: _insert(file_db, value))
            if file_db.checkpoint_due():
                file_db.checkpoint()

    writes(2 * LOOP_CHECKPOINT_EVERY)
    plateau = os.path.getsize(wal)
    writes(4 * LOOP_CHECKPOINT_EVERY)
    # Without the checkpoints the WAL would have tripled; with them it is reused from the start.
    assert os.path.getsize(wal) <= plateau
