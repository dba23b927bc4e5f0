"""A PostgreSQL small flow's statements on the event loop through asyncpg (storage/pg_loop.py):
no worker thread once the process has its key; a download cancelled under its spend still
spends, and is audited as never sent (on the thread's path too); connections the server
closed are replaced; a connection lost under a spend answers 30003 and audits it; a lost read
is read again; the shutdown closes the pool."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from starlette.types import Message

from cdrgate.api import threads
from cdrgate.app import create_app
from cdrgate.errors import Errno
from cdrgate.ingest.store import store_records
from cdrgate.services import downloads, export
from cdrgate.services.auth import set_api_user
from cdrgate.settings import Settings
from cdrgate.storage import pg_loop
from cdrgate.storage.db import Database
from cdrgate.storage.tables import cdr_random, download_audit
from tests import cancelled_request
from tests.conftest import API_PASSWORD, API_USER, POSTGRES_ENV, Flow, make_cdr

DAY = ("2026-05-28 00:00:00", "2026-05-28 23:59:59")
OK = "text/csv; charset=utf-8"


@contextmanager
def _serving(pg_db: Database, clock, **settings: Any) -> Iterator[tuple[Flow, Database]]:
    set_api_user(pg_db, API_USER, API_PASSWORD, int(clock() * 1000))
    store_records(
        pg_db,
        [
            # Not ASCII, and a cell csv_safe rewrites: the bytes sent are not the characters,
            # nor, with csv_safe, the stored line's.
            make_cdr(callfrom="1000", timestart="2026-05-28 10:00:00", pincode="=né€"),
            make_cdr(callid="b.1", callto="1000", callfrom="555", timestart="2026-05-28 11:00:00"),
        ],
    )
    given = Settings(database=pg_db.url, access_log=False, **settings)
    app = create_app(given, database=pg_db, clock=clock)
    with TestClient(app, base_url="http://pbx.test:8088", client=("127.0.0.1", 50000)) as http:
        yield Flow(http), pg_db


@pytest.fixture
def served(pg_db: Database, clock) -> Iterator[tuple[Flow, Database]]:
    with _serving(pg_db, clock) as serving:
        yield serving


def _download(flow: Flow, token: str) -> str:
    random = flow.get_random(token, "1000", *DAY)["random"]
    response = flow.http.get(flow.download_url(token, random, "1000", *DAY))
    return "csv" if response.headers["content-type"] == OK else response.json()["errno"]


def _audit(db: Database) -> list[tuple[str, str | None]]:
    with db.read() as conn:
        rows = conn.execute(select(download_audit.c.outcome, download_audit.c.errno))
        return [(row[0], row[1]) for row in rows]


def _admin() -> psycopg.Connection[Any]:
    return psycopg.connect(os.environ[POSTGRES_ENV], autocommit=True)


def test_a_small_flow_runs_no_worker_thread_once_the_key_is_read(served, monkeypatch):
    flow, _db = served
    token = flow.token()
    assert _download(flow, token) == "csv"  # the first get_random reads the key in a thread
    handed: list[object] = []
    monkeypatch.setattr(threads._workers, "submit", handed.append)
    for _ in range(3):
        assert _download(flow, token) == "csv"
    assert handed == []


def _counting_statements(monkeypatch) -> list[bool]:
    """The loop's statements from now on, as whether each was run as a write."""
    ran: list[bool] = []
    real_row = pg_loop.LoopStatements.row

    async def row(self, statement, params, *, writes=False):
        ran.append(writes)
        return await real_row(self, statement, params, writes=writes)

    monkeypatch.setattr(pg_loop.LoopStatements, "row", row)
    return ran


def _records(db: Database) -> list[tuple[str, str | None, int, int]]:
    with db.read() as conn:
        rows = conn.execute(
            select(
                download_audit.c.outcome, download_audit.c.errno, download_audit.c.rows,
                download_audit.c.bytes,
            ).order_by(download_audit.c.id)
        )  # fmt: skip
        return [(row[0], row[1], row[2], row[3]) for row in rows]


def test_a_small_download_is_one_statement_that_audits_the_bytes_the_client_receives(
    served, monkeypatch
):
    flow, db = served
    token = flow.token()
    assert _download(flow, token) == "csv"  # the key, read once
    random = flow.get_random(token, "1000", *DAY)["random"]
    ran = _counting_statements(monkeypatch)
    before = len(_records(db))
    response = flow.http.get(flow.download_url(token, random, "1000", *DAY))
    assert response.headers["content-type"] == OK
    assert ran == [True]  # the token, the day, the spend and its record: one statement
    body = response.content
    assert len(body) > len(body.decode("utf-8"))  # not ASCII: bytes are counted, not characters
    assert _records(db)[before:] == [("ok", None, 2, len(body))]


@pytest.mark.parametrize(
    "settings",
    [{"csv_safe": True}, {"empty_download": "errno"}],
    ids=["csv_safe", "empty-refused"],
)
def test_what_the_one_statement_does_not_spend_the_two_statements_answer_on_the_loop(
    pg_db, clock, monkeypatch, settings
):
    with _serving(pg_db, clock, **settings) as (flow, db):
        token = flow.token()
        assert _download(flow, token) == "csv"  # the key, read once
        day = DAY if "csv_safe" in settings else ("2026-05-27 00:00:00", "2026-05-27 23:59:59")
        random = flow.get_random(token, "1000", *day)["random"]
        ran = _counting_statements(monkeypatch)
        handed: list[object] = []
        monkeypatch.setattr(threads._workers, "submit", handed.append)
        before = len(_records(db))
        response = flow.http.get(flow.download_url(token, random, "1000", *day))
        assert handed == []  # answered on the loop
        if "csv_safe" in settings:
            assert ran == [False, True]  # the day read, then the spend with its record
            body = response.content
            assert b"'=n" in body  # rewritten: the bytes are not the stored line's
            assert _records(db)[before:] == [("ok", None, 2, len(body))]
        else:
            assert ran == [True, True]  # the one statement spent nothing; then the refusal's
            assert response.json()["errno"] == Errno.CDR_NOT_FOUND.value
            assert _records(db)[before:] == [("failed", Errno.CDR_NOT_FOUND.value, 0, 0)]


def _cancel_at(
    db: Database, app: Any, target: str, moment: Callable[[], Awaitable[object]]
) -> None:
    """GET ``target`` from ``app`` on a loop of its own, and cancel the request once
    ``moment()`` returns (as uvicorn cancels a request at the drain's deadline)."""

    async def cancelled_download() -> None:
        sent: list[Message] = []
        request = cancelled_request.get(app, target, sent)
        await moment()
        request.cancel()  # a shutdown's cut: under the download's database work
        await asyncio.wait([request])
        assert request.cancelled()
        assert sent == []  # not a byte of the answer
        await db.close_on_loop()

    asyncio.run(cancelled_download())


def test_a_download_cancelled_under_its_spend_still_spends_and_is_audited_unsent(
    served, monkeypatch
):
    flow, db = served
    token = flow.token()
    assert _download(flow, token) == "csv"  # the key, read once
    random = flow.get_random(token, "1000", *DAY)["random"]
    target = flow.download_url(token, random, "1000", *DAY)
    real_row = pg_loop.LoopStatements.row
    spending = asyncio.Event()

    async def slow_row(self, statement, params, *, writes=False):
        if writes:
            spending.set()
            await asyncio.sleep(0.3)  # the spend's round trip, slowed
        return await real_row(self, statement, params, writes=writes)

    monkeypatch.setattr(pg_loop.LoopStatements, "row", slow_row)
    before = len(_audit(db))
    _cancel_at(db, flow.http.app, target, spending.wait)
    with db.read() as conn:
        spent = conn.execute(select(cdr_random.c.used_ms)).scalars().all()
    assert len(spent) == 2 and all(used is not None for used in spent)  # both randoms spent
    # Audited with the spend as "ok", then, never sent, as a download the drain cut.
    assert _records(db)[before:] == [("cut", None, 0, 0)]


def _in_thread_until(event: threading.Event) -> Callable[[], Awaitable[object]]:
    async def moment() -> None:
        await asyncio.to_thread(event.wait, 30)

    return moment


@pytest.mark.parametrize("result", ["whole", "paged"])
def test_a_download_cancelled_in_its_thread_after_its_spend_is_audited_unsent(
    served, monkeypatch, result
):
    """The thread's path (``all`` is never on the loop): a small result audited ``ok`` with
    its spend is corrected; a paged one, whose record is written when it ends, is written."""
    flow, db = served
    token = flow.token()
    day = DAY if result == "whole" else ("2026-05-01 00:00:00", "2026-05-31 23:59:59")
    random = flow.get_random(token, "all", *day)["random"]
    target = flow.download_url(token, random, "all", *day)
    opened = threading.Event()
    service = downloads.DownloadService
    real = service._whole_export if result == "whole" else export.first_page

    def slowed(*args: Any) -> Any:
        made = real(*args)
        opened.set()
        time.sleep(0.3)  # the rest of the thread's work, slowed
        return made

    if result == "whole":
        monkeypatch.setattr(service, "_whole_export", slowed)
    else:
        monkeypatch.setattr(downloads, "first_page", slowed)
    slots = flow.http.app.state.services.downloads.slots
    before = len(_audit(db))
    _cancel_at(db, flow.http.app, target, _in_thread_until(opened))
    assert _records(db)[before:] == [("cut", None, 0, 0)]
    assert slots.in_use == 0


def test_connections_the_server_closed_are_replaced_without_a_failed_request(served):
    flow, _db = served
    token = flow.token()
    for _ in range(3):
        assert _download(flow, token) == "csv"
    with _admin() as admin:  # as a restart or a failover does to every connection
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'cdrgate' AND pid <> pg_backend_pid()"
        )
        while admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cdrgate'"
        ).fetchone() != (0,):
            pass
    for _ in range(3):
        assert _download(flow, token) == "csv"


class _Dying:
    """An asyncpg connection whose backend is terminated just before a statement whose text
    holds ``marker`` (once): the connection lost under that statement."""

    def __init__(self, conn: Any, marker: str, killed: list[int]) -> None:
        self.conn, self.marker, self.killed = conn, marker, killed

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        if self.marker in sql and not self.killed:
            pid = self.conn.get_server_pid()
            self.killed.append(pid)
            with _admin() as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                while admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)
                ).fetchone() != (0,):
                    pass
        return await self.conn.fetchrow(sql, *args)


def _dying(monkeypatch, marker: str) -> list[int]:
    killed: list[int] = []
    real_connect = pg_loop.LoopStatements._connect

    async def connect(self):
        return _Dying(await real_connect(self), marker, killed)

    monkeypatch.setattr(pg_loop.LoopStatements, "_connect", connect)
    return killed


def test_a_connection_lost_under_a_spend_answers_30003_and_audits_it(served, monkeypatch):
    flow, db = served
    token = flow.token()
    assert _download(flow, token) == "csv"
    flow.http.portal.call(db.close_on_loop)  # new connections, through the patched connect
    killed = _dying(monkeypatch, "download_audit")
    before = len(_audit(db))
    assert _download(flow, token) == Errno.APISRV_DOWN.value  # not retried: it may have run
    assert killed
    assert _audit(db)[before:] == [("failed", Errno.APISRV_DOWN.value)]
    assert _download(flow, token) == "csv"  # a new connection for the next


def test_a_read_whose_connection_was_lost_is_read_again(served, monkeypatch):
    flow, db = served
    token = flow.token()
    assert _download(flow, token) == "csv"
    flow.http.portal.call(db.close_on_loop)
    killed = _dying(monkeypatch, "api_token")  # get_random's token read
    assert _download(flow, token) == "csv"
    assert killed


def test_the_shutdown_closes_the_loops_connections(pg_db: Database, clock):
    set_api_user(pg_db, API_USER, API_PASSWORD, int(clock() * 1000))
    app = create_app(Settings(database=pg_db.url, access_log=False), database=pg_db, clock=clock)
    with TestClient(app, base_url="http://pbx.test:8088", client=("127.0.0.1", 50000)) as http:
        flow = Flow(http)
        token = flow.token()
        for _ in range(2):
            flow.get_random(token, "1000", *DAY)
        statements = pg_db.loop_statements
        assert statements is not None
        (pool,) = statements._pools.values()
        conns = list(pool._idle)
        assert conns
    assert statements._pools == {}
    assert all(conn.is_closed() for conn in conns)
