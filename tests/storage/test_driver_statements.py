"""A flow's hot statements run on the driver's cursor, sqlite3's or psycopg's
(storage/driver.py): they store and read exactly what their SQLAlchemy Core definitions do."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from cdrgate.errors import StorageUnavailable
from cdrgate.ingest.store import store_records
from cdrgate.services.auth import set_api_user
from cdrgate.storage import audit, cdrs, driver, randoms, schema, tokens
from cdrgate.storage.db import Database
from cdrgate.storage.tables import api_token, cdr_random, download_audit
from tests.conftest import make_cdr

NOW = 1_780_000_000_000
IDLE_MS = 1_800_000
# Where the driver is looked up: the modules that call it, and HotStatement's own.
DRIVER_MODULES = (cdrs, driver)  # the modules that look up the driver connection


def _flow(db: Database) -> list[Any]:
    """Every hot statement, on rows that exercise their NULLs, misses and refusals; returns
    what each answered and then the tables they wrote."""
    set_api_user(db, "api", "pw", NOW)
    store_records(
        db,
        [
            make_cdr(callid=f"c{i}", sn=f"s{i}", timestart=f"2026-05-28 10:00:0{i}",
                     callfrom="1000" if i % 2 else "1001", callto=f"02155501{i}")
            for i in range(6)
        ],
    )  # fmt: skip
    seen: list[Any] = []
    with db.write() as conn:
        tokens.create(conn, "t" * 64, "api", "127.0.0.1", NOW, {})
        tokens.create(conn, "u" * 64, "gone", "127.0.0.1", NOW, {})  # no such account
        seen += [tokens.last_seen(conn, "t" * 64), tokens.last_seen(conn, "u" * 64)]
        seen += [tokens.last_seen(conn, "x" * 64)]
        seen += [tokens.touch(conn, "t" * 64, NOW + 5, IDLE_MS)]
        seen += [tokens.touch(conn, "t" * 64, NOW + 5 + IDLE_MS, IDLE_MS)]  # idle too long
        common = {"token_hash": "t" * 64, "selector": "1000", "start_ts": 1, "end_ts": 2}
        randoms.create(conn, random_hash="a" * 64, client_ip="127.0.0.1", allowed_ip=None,
                       expires_ms=NOW + 30_000, **common)  # fmt: skip
        randoms.create(conn, random_hash="b" * 64, client_ip="::1", allowed_ip="10.0.0.1",
                       expires_ms=NOW - 1, **common)  # fmt: skip
        a, b, later = (NOW + 30_000, "a" * 64), (NOW - 1, "b" * 64), NOW + 30_000
        seen += [randoms.find(conn, *a), randoms.find(conn, later, "z" * 64)]
        seen += [randoms.find(conn, NOW, "a" * 64)]  # the right hash under another expiry
        randoms.create(conn, random_hash="c" * 64, client_ip="::1", allowed_ip="10.0.0.1",
                       expires_ms=NOW + 30_000, **common)  # fmt: skip

        def spend(key: tuple[int, str], token: str, end_ts: int, ip: str) -> randoms.Spend:
            return randoms.Spend(*key, token, "1000", 1, end_ts, ip)

        c = (NOW + 30_000, "c" * 64)
        for attempt in [
            spend(a, "u" * 64, 2, "127.0.0.1"),  # another token
            spend(a, "t" * 64, 3, "127.0.0.1"),  # another range
            spend(a, "t" * 64, 2, "10.0.0.1"),  # another client, no allowedip
            spend(a, "t" * 64, 2, "127.0.0.1"),  # wins
            spend(a, "t" * 64, 2, "127.0.0.1"),  # used
            spend(b, "t" * 64, 2, "::1"),  # expired
            spend(c, "t" * 64, 2, "10.0.0.1"),  # wins from its allowedip
        ]:
            seen += [randoms.redeem(conn, attempt, NOW)]
        assert seen[-7:] == [False, False, False, True, False, False, True]
        seen += [randoms.find(conn, *a), randoms.find(conn, *c)]
        record = {
            "at_ms": NOW, "account": None, "client_ip": "127.0.0.1", "api_version": "v1.1.0",
            "selector": "all", "starttime": "", "endtime": "", "rows": 0, "bytes": 0,
            "outcome": "failed", "errno": "20004", "kind": "cdr",
        }  # fmt: skip
        seen += [audit.insert(conn, record)]
        seen += [audit.insert(conn, {**record, "account": "api", "outcome": "ok", "errno": None})]
        start, end = 1_780_000_000 - 10**6, 1_780_000_000 + 10**8
        for query, limit in [
            (cdrs.CdrQuery(start, end, ("1000",)), 100),
            (cdrs.CdrQuery(start, end, ("1001", "021555012", "9999")), 3),
            (cdrs.CdrQuery(start, end), 4),
            (cdrs.CdrQuery(start, end), None),
            (cdrs.CdrQuery(0, 1, ("1000",)), 10),
        ]:
            seen.append(cdrs.read_lines(conn, query, limit))
    with db.read() as conn:
        for table, order in [
            (api_token, api_token.c.token_hash),
            (cdr_random, cdr_random.c.random_hash),
            (download_audit, download_audit.c.id),
        ]:
            seen.append([tuple(row) for row in conn.execute(select(table).order_by(order))])
    return seen


@pytest.fixture
def core_reference(tmp_path, monkeypatch) -> list[Any]:
    """``_flow`` on a SQLite file with the driver path turned off: Core statements only."""
    with monkeypatch.context() as patch:
        for module in DRIVER_MODULES:
            patch.setattr(module, "sqlite_driver", lambda conn: None)
            patch.setattr(module, "postgres_driver", lambda conn: None)
        db = Database(f"sqlite:///{tmp_path / 'core.db'}")
        schema.upgrade(db)
        try:
            return _flow(db)
        finally:
            db.dispose()


def test_the_driver_statements_answer_and_store_what_their_core_statements_do(
    db: Database, core_reference: list[Any]
) -> None:
    # ``db`` runs the driver statements, sqlite3's or psycopg's, compared with SQLite's Core
    # run: one behaviour on either engine.
    assert _flow(db) == core_reference


def test_a_driver_statement_that_fails_is_storage_unavailable_like_a_core_one(tmp_path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'broken.db'}")
    schema.upgrade(db)
    try:
        with db.write() as conn:
            conn.exec_driver_sql("DROP TABLE cdr_random")
        with pytest.raises(StorageUnavailable, match="no such table"), db.write() as conn:
            randoms.find(conn, 1, "a" * 64)
    finally:
        db.dispose()


def test_a_store_connection_runs_its_hot_statements_on_one_kept_cursor(tmp_path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'kept.db'}")
    schema.upgrade(db)
    set_api_user(db, "api", "pw", NOW)
    try:
        with db.write() as conn:
            tokens.create(conn, "t" * 64, "api", "127.0.0.1", NOW, {})
            raw = driver.sqlite_driver(conn)
            assert isinstance(raw, driver.StoreConnection)
            # Each result is read whole before the next statement, so one cursor serves all.
            assert tokens.last_seen(conn, "t" * 64) == ("api", NOW, None, "127.0.0.1")
            assert tokens.touch(conn, "t" * 64, NOW + 1, IDLE_MS) == "api"
            assert tokens.touch(conn, "u" * 64, NOW + 1, IDLE_MS) is None
            assert raw.kept.description == (("account", None, None, None, None, None, None),)
    finally:
        db.dispose()


def test_a_postgres_connection_runs_its_hot_statements_on_one_kept_cursor(db) -> None:
    """As SQLite's: psycopg's ``Connection.execute`` made a cursor per statement."""
    if db.is_sqlite:
        pytest.skip("psycopg's connection")
    set_api_user(db, "api", "pw", NOW)
    with db.write() as conn:
        tokens.create(conn, "t" * 64, "api", "127.0.0.1", NOW, {})
        raw = driver.postgres_driver(conn)
        assert tokens.last_seen(conn, "t" * 64) == ("api", NOW, None, "127.0.0.1")
        kept = driver.postgres_runner(raw)
        # Each result is read whole before the next statement, so one cursor serves all.
        assert tokens.touch(conn, "t" * 64, NOW + 1, IDLE_MS) == "api"
        assert tokens.touch(conn, "u" * 64, NOW + 1, IDLE_MS) is None
        assert tokens.last_seen(conn, "u" * 64) is None
        assert driver.postgres_runner(raw) is kept
        assert kept.description[0].name == "account"
