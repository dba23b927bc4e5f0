"""A pooled PostgreSQL connection is pinged on checkout only when it may be gone
(storage/pg_liveness.py): one the server closed is replaced before a request gets it, and a
live one costs no round trip."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from cdrgate.storage.db import Database
from tests.conftest import POSTGRES_ENV, migrated_postgres
from tests.pg_backends import terminate_backends


@pytest.fixture
def pg() -> Iterator[Database]:
    if not os.environ.get(POSTGRES_ENV):
        pytest.skip(f"PostgreSQL's pool: set {POSTGRES_ENV}")
    with migrated_postgres() as database:
        yield database


def _pooled_backends(db: Database, count: int) -> list[int]:
    """Check out ``count`` connections at once and return them to the pool; their backends."""
    conns = [db.engine.connect() for _ in range(count)]
    pids = [conn.execute(text("SELECT pg_backend_pid()")).scalar_one() for conn in conns]
    for conn in conns:
        conn.close()
    return pids


def test_requests_after_the_server_closed_every_pooled_connection_succeed(pg: Database):
    pids = _pooled_backends(pg, 3)
    terminate_backends(*pids)  # as a restart or a failover does to every connection
    for _ in range(3):
        with pg.read() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
        with pg.read(one_statement=True) as conn:
            assert conn.execute(text("SELECT 2")).scalar_one() == 2


def test_a_live_pooled_connection_is_handed_out_without_a_ping(
    pg: Database, monkeypatch: pytest.MonkeyPatch
):
    _pooled_backends(pg, 2)
    pings: list[object] = []

    def ping(dbapi_connection: object) -> bool:
        pings.append(dbapi_connection)
        return True

    monkeypatch.setattr(pg.engine.dialect, "do_ping", ping)
    for _ in range(5):
        with pg.read() as conn:
            conn.execute(text("SELECT 1"))
        with pg.write() as conn:
            conn.execute(text("SELECT 1"))
    assert pings == []
