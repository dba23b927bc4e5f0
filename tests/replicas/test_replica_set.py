"""Choosing a replica for a read: caught up within the bound, or skipped for a while and
then tried again (a manual clock stands in for the wait)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cdrgate.storage import replicas
from cdrgate.storage.db import Database, make_engine
from cdrgate.storage.replicas import ReplicaSet
from tests.conftest import postgres_schema
from tests.replicas.conftest import ReplicaServer, replica_of


class Clock:
    """Each reading a millisecond later: a wait for the replica ends after a few polls."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


@pytest.fixture
def primary(replica: ReplicaServer) -> Iterator[Database]:
    with postgres_schema() as url:
        db = Database(url, replicas=[replica_of(url)])
        yield db
        db.dispose()


def position(db: Database) -> str:
    found = db.current_position()
    assert found is not None
    return found


def test_a_replica_that_replayed_the_position_is_chosen(primary, replica):
    replica.wait_for(primary.url)
    chosen = ReplicaSet([replica.url], make_engine, max_lag_ms=60_000)
    try:
        assert chosen.choose(position(primary)) is chosen.replicas[0]
    finally:
        chosen.dispose()


def test_a_lagging_replica_is_skipped_then_tried_again_later(primary, replica):
    clock = Clock()
    chosen = ReplicaSet([replica.url], make_engine, max_lag_ms=5, clock=clock)
    replica.execute("SELECT pg_wal_replay_pause()")
    try:
        with primary.write() as conn:  # WAL the paused replica cannot have replayed
            conn.exec_driver_sql("CREATE TABLE moved_on (x int)")
        ahead = position(primary)
        assert chosen.choose(ahead) is None
        assert not chosen.is_up(chosen.replicas[0])
        replica.execute("SELECT pg_wal_replay_resume()")
        replica.wait_for(primary.url)
        assert chosen.choose(ahead) is None  # skipped: not even asked
        clock.now += replicas.RETRY_AFTER_S
        assert chosen.choose(ahead) is chosen.replicas[0]
    finally:
        replica.execute("SELECT pg_wal_replay_resume()")
        chosen.dispose()


def test_an_unreachable_replica_is_skipped_and_the_export_reads_the_primary(primary):
    db = Database(primary.url, replicas=["postgresql://postgres@127.0.0.1:9/postgres"])
    try:
        view = db.for_export(position(db))
        assert view is db
        assert view.export_read(lambda conn: conn.exec_driver_sql("SELECT 1").scalar()) == 1
    finally:
        db.dispose()


def test_replicas_need_a_postgresql_primary(tmp_path):
    with pytest.raises(Exception, match="PostgreSQL primary"):
        Database(f"sqlite:///{tmp_path}/x.db", replicas=["postgresql://h/db"])
