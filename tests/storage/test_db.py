"""The database handle under stress: an exhausted pool, a writer waiting for a connection, and
a SQLite file pulled from under the process."""

from __future__ import annotations

import os
import shutil
import threading
import time

import pytest

from cdrgate.errors import StorageUnavailable
from cdrgate.storage import schema
from cdrgate.storage.db import CONNECTIONS_A_PROCESS, Database


@pytest.fixture
def tight_db(database_url):
    """One pooled connection, and a short wait for it."""
    db = Database(database_url, pool_size=1, max_overflow=0, pool_timeout=0.5)
    schema.upgrade(db)
    yield db
    db.dispose()


def test_an_exhausted_pool_is_storage_unavailable_not_a_traceback(tight_db):
    with tight_db.read(), pytest.raises(StorageUnavailable, match="pool"):
        with tight_db.write():
            pass


def test_a_writer_waiting_for_a_connection_does_not_hold_the_write_lock(tight_db):
    if not tight_db.is_sqlite:
        pytest.skip("the process write lock is SQLite's")
    waiting = threading.Event()
    outcome: list[BaseException | None] = []

    def writer() -> None:
        waiting.set()
        try:
            with tight_db.write():
                pass
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    slow_pool = Database(tight_db.url, pool_size=1, max_overflow=0, pool_timeout=3)
    tight_db = slow_pool
    with tight_db.read():  # holds the only connection
        thread = threading.Thread(target=writer)
        thread.start()
        waiting.wait()
        time.sleep(0.3)  # let the writer reach the pool's queue
        lock = tight_db._sqlite_writer
        assert lock is not None
        assert lock.acquire(timeout=1), "a writer queued on the pool held the write lock"
        lock.release()
        thread.join()
    assert isinstance(outcome[0], StorageUnavailable)
    slow_pool.dispose()


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_writes_to_a_sqlite_file_deleted_or_replaced_under_the_server_are_refused(
    tmp_path, how, caplog
):
    path = tmp_path / "live.db"
    db = Database(f"sqlite:///{path}")
    schema.upgrade(db)
    with db.write() as conn:
        conn.exec_driver_sql("CREATE TABLE probe (x INTEGER)")
    if how == "deleted":
        os.remove(path)
    else:
        shutil.copy(path, tmp_path / "other.db")
        os.replace(tmp_path / "other.db", path)
    with pytest.raises(StorageUnavailable, match=how):
        with db.write() as conn:
            conn.exec_driver_sql("INSERT INTO probe VALUES (1)")
    assert f"was {how} while in use" in caplog.text
    db.dispose()


def test_the_flows_autocommit_statements_are_planned_once_and_others_per_run(db):
    """A small flow's statements run on connections that keep one (generic) plan per prepared
    statement; every other read keeps PostgreSQL's choice (a year's export is faster on a plan
    made for its values)."""
    statements = db.autocommit()
    if statements is None:
        pytest.skip("PostgreSQL's connections")
    with statements as conn:
        assert conn.exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_generic_plan"
    with db.read(one_statement=True) as conn:
        assert conn.exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_generic_plan"
    with db.read() as conn:
        assert conn.exec_driver_sql("SHOW plan_cache_mode").scalar() == "auto"
    with db.write() as conn:
        assert conn.exec_driver_sql("SHOW plan_cache_mode").scalar() == "auto"


def test_a_process_holds_at_most_20_connections_its_pools_own_sum(db):
    """The README's max_connections rule: workers x 20 (``CONNECTIONS_A_PROCESS``), the sum of
    every pool's most: the requests', the one-statement reads', the downloads' and the loop's;
    4 workers stay well under PostgreSQL's default 100 less its 3 reserved."""
    if db.is_sqlite:
        pytest.skip("PostgreSQL's pools")
    db.export_read(lambda conn: None)  # the downloads' pool is made on first use
    pools = [db.engine.pool, db._one_statement.pool, db._export_engine.pool]
    pooled = sum(pool.size() + pool._max_overflow for pool in pools)
    assert pooled + db.loop_statements._size == CONNECTIONS_A_PROCESS == 20
    assert 4 * CONNECTIONS_A_PROCESS < 97


def test_an_autocommit_block_answers_a_lost_connection_as_storage_unavailable(db):
    """A flow's autocommit block returns its connection to the pool, and a connection lost
    inside it is StorageUnavailable (errno 30003), not a driver error (a 500)."""
    statements = db.autocommit()
    if statements is None:
        pytest.skip("PostgreSQL's connections")
    with statements as conn:
        assert db.connections_in_use() == 1
    assert db.connections_in_use() == 0
    with pytest.raises(StorageUnavailable), db.read(one_statement=True) as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with db.read() as admin:  # as a restart or a failover does
            admin.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        conn.exec_driver_sql("SELECT 1")
    assert db.connections_in_use() == 0
