"""What a request answers when it can have no PostgreSQL connection (the budget a process
holds is ``tests/storage/test_db.py``'s): a pool exhausted, or a server that refuses a new
connection (too many clients), is answered 30003 once the pool's wait is over, never a 500 nor
an unexpected error, and the next requests work once connections are free again."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from cdrgate.app import create_app
from cdrgate.errors import Errno
from cdrgate.ingest.store import store_records
from cdrgate.services.auth import set_api_user
from cdrgate.settings import Settings
from cdrgate.storage import db as storage_db
from cdrgate.storage import pg_loop, schema
from cdrgate.storage.db import Database, normalise_url
from tests.conftest import API_PASSWORD, API_USER, POSTGRES_ENV, Flow, make_cdr, postgres_schema

DAY = ("2026-05-28 00:00:00", "2026-05-28 23:59:59")
OK = "text/csv; charset=utf-8"
# A role the server lets hold this many connections (a superuser is never refused).
ROLE_LIMIT = 4


def _answer(response: Any) -> str:
    assert response.status_code == 200
    return "csv" if response.headers["content-type"] == OK else response.json()["errno"]


def _random(flow: Flow, token: str) -> str | Any:
    answer = flow.get_random(token, "1000", *DAY)
    return answer["random"] if answer["status"] == "Success" else answer["errno"]


def _download(flow: Flow, token: str, random: str) -> str:
    return _answer(flow.http.get(flow.download_url(token, random, "1000", *DAY)))


def _plain(url: str) -> str:
    return make_url(normalise_url(url)).set(drivername="postgresql").render_as_string(False)


def _store(url: str, clock) -> Database:
    """A migrated store at ``url`` holding the API user and a CDR; a pool's wait for a free
    connection half a second (30 s in a server)."""
    database = Database(url, pool_timeout=0.5)
    schema.upgrade(database)
    set_api_user(database, API_USER, API_PASSWORD, int(clock() * 1000))
    store_records(database, [make_cdr(callfrom="1000", timestart="2026-05-28 10:00:00")])
    return database


@pytest.fixture
def store(clock) -> Iterator[Database]:
    with postgres_schema() as url:
        database = _store(url, clock)
        try:
            yield database
        finally:
            database.dispose()


@pytest.fixture
def limited(clock) -> Iterator[tuple[Database, str]]:
    """A store in a schema of its own, reached as a role the server refuses past
    ``ROLE_LIMIT`` connections ("too many connections for role", SQLSTATE 53300, as "too many
    clients already" past max_connections); and that role's plain DSN."""
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        pytest.skip(f"needs PostgreSQL: set {POSTGRES_ENV}")
    name = f"t_{secrets.token_hex(6)}"
    admin = _plain(server)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN CONNECTION LIMIT {ROLE_LIMIT}")
        conn.execute(f"CREATE SCHEMA {name} AUTHORIZATION {name}")
    url = (
        make_url(server).set(username=name).update_query_dict({"options": f"-csearch_path={name}"})
    )
    database = _store(url.render_as_string(hide_password=False), clock)
    try:
        yield database, _plain(url.render_as_string(hide_password=False))
    finally:
        database.dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")
            conn.execute(f"DROP ROLE {name}")


def _backends_gone(role_dsn: str) -> None:
    """Wait until the server has no backend of the role left: a closed connection's backend
    exits after the client has gone, and until then it still counts against the role's
    limit (seen on a loaded machine: the test's own connections refused)."""
    role = conninfo_to_dict(role_dsn)["user"]
    left = None
    with psycopg.connect(_plain(os.environ[POSTGRES_ENV]), autocommit=True) as conn:
        for _ in range(200):  # 10 s at most
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (role,)
            ).fetchone()
            left = row[0] if row is not None else None
            if left == 0:
                return
            time.sleep(0.05)
    raise AssertionError(f"{left} backends of the role still there after 10 s")


def _served(database: Database, clock) -> TestClient:
    app = create_app(
        Settings(database=database.url, access_log=False), database=database, clock=clock
    )
    return TestClient(app, base_url="http://pbx.test:8088", client=("127.0.0.1", 50000))


def _no_unexpected(caplog: pytest.LogCaptureFixture) -> None:
    unexpected = [r.getMessage() for r in caplog.records if "unexpected" in r.getMessage()]
    assert unexpected == []


def test_a_server_that_refuses_new_connections_is_answered_30003_then_served_again(
    limited, clock, caplog
):
    database, role_dsn = limited
    caplog.set_level(logging.ERROR)
    with _served(database, clock) as http:
        flow = Flow(http)
        token = flow.token()
        assert _download(flow, token, _random(flow, token)) == "csv"  # the key read, pools open
        random = _random(flow, token)
        # This process's connections closed, every one the role may have taken by others.
        flow.http.portal.call(database.close_on_loop)
        database.dispose()
        _backends_gone(role_dsn)
        others = [psycopg.connect(role_dsn) for _ in range(ROLE_LIMIT)]
        try:
            with pytest.raises(psycopg.OperationalError, match="too many connections"):
                psycopg.connect(role_dsn)
            assert _random(flow, token) == Errno.APISRV_DOWN.value  # the loop's (asyncpg)
            assert _download(flow, token, random) == Errno.APISRV_DOWN.value
            assert flow.login()["errno"] == Errno.APISRV_DOWN.value  # a thread's (psycopg)
            stored = flow.get_random(token, "1000", *DAY, allowedip="10.0.0.9")
            assert stored["errno"] == Errno.APISRV_DOWN.value
        finally:
            for other in others:
                other.close()
        assert _download(flow, token, random) == "csv"  # not spent by the refused attempt
        assert _download(flow, token, _random(flow, token)) == "csv"
    _no_unexpected(caplog)


def test_pools_exhausted_are_answered_30003_once_their_wait_is_over(
    store, clock, caplog, monkeypatch
):
    database = store
    caplog.set_level(logging.ERROR)
    monkeypatch.setattr(pg_loop, "ACQUIRE_TIMEOUT_S", 0.5)
    with _served(database, clock) as http:
        flow = Flow(http)
        token = flow.token()
        assert _download(flow, token, _random(flow, token)) == "csv"
        statements = database.loop_statements
        assert statements is not None

        async def take_all() -> list[Any]:
            pool = statements._pools[asyncio.get_running_loop()]
            return [await pool.take() for _ in range(storage_db.LOOP_POOL_SIZE)]

        async def give_back(conns: list[Any]) -> None:
            pool = statements._pools[asyncio.get_running_loop()]
            for conn in conns:
                pool.give(conn)

        held = flow.http.portal.call(take_all)  # every loop connection out
        try:
            assert _random(flow, token) == Errno.APISRV_DOWN.value
        finally:
            flow.http.portal.call(give_back, held)
        random = _random(flow, token)
        main = database.engine
        taken = [main.connect() for _ in range(main.pool.size() + main.pool._max_overflow)]
        try:
            assert flow.login()["errno"] == Errno.APISRV_DOWN.value
        finally:
            for conn in taken:
                conn.close()
        assert _download(flow, token, random) == "csv"
    _no_unexpected(caplog)
