"""A PostgreSQL small flow's statements on the event loop through asyncpg (storage/pg_loop.py):
no worker thread once the process has its key; a download cancelled under its spend still
spends, and is audited as never sent (on the thread's path too); connections the server
closed are replaced; a connection lost under a spend answers 30003 and audits it, once where
the spend committed before its answer was lost (the thread's write transaction's COMMIT
too), and nothing more where that cannot be told; a lost read is read again; the shutdown
closes the pool."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient
from starlette.types import Message

from cdrgate.api import threads
from cdrgate.app import create_app
from cdrgate.errors import Errno, StorageUnavailable
from cdrgate.ingest.store import store_records
from cdrgate.services import downloads, export
from cdrgate.services.auth import TOUCH_EVERY_MS, set_api_user
from cdrgate.settings import Settings
from cdrgate.storage import audit, pg_loop, schema, signed_spend
from cdrgate.storage.db import Database
from cdrgate.storage.tables import cdr_random, download_audit
from tests import cancelled_request
from tests.conftest import (
    API_PASSWORD,
    API_USER,
    POSTGRES_ENV,
    Flow,
    make_cdr,
    postgres_schema,
)
from tests.counted import downloads_counted
from tests.pg_backends import terminate_backends
from tests.postgres.lost_commit import lose_commit_after

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
    db: Database, app: Any, target: str, moment: Callable[[], Awaitable[object]],
    cancelled: threading.Event | None = None,
) -> None:  # fmt: skip
    """GET ``target`` from ``app`` on a loop of its own, and cancel the request once
    ``moment()`` returns (as uvicorn cancels a request at the drain's deadline); then set
    ``cancelled``, which a worker thread's slowed work can wait for."""

    async def cancelled_download() -> None:
        sent: list[Message] = []
        request = cancelled_request.get(app, target, sent)
        await moment()
        request.cancel()  # a shutdown's cut: under the download's database work
        if cancelled is not None:
            cancelled.set()
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


@pytest.mark.parametrize("statements", ["one", "two"])
def test_a_download_cancelled_while_its_spend_fails_is_audited_failed_once(
    pg_db, clock, monkeypatch, statements
):
    """The spend's statement fails (30003: a connection lost under it) while the drain's
    deadline cancels the request: the attempt is audited once, failed 30003, as it is when no
    cancel comes (it had no record: ``commit_failed`` was left to the answer that never came).
    ``two``: ``csv_safe``'s day read, then the spend (``audit.spent_on_loop``)."""
    settings = {"csv_safe": True} if statements == "two" else {}
    with _serving(pg_db, clock, **settings) as (flow, db):
        token = flow.token()
        assert _download(flow, token) == "csv"  # the key, read once
        random = flow.get_random(token, "1000", *DAY)["random"]
        target = flow.download_url(token, random, "1000", *DAY)
        real_row = pg_loop.LoopStatements.row
        spending = asyncio.Event()
        ran: list[bool] = []

        async def failing_spend(self, statement, params, *, writes=False):
            ran.append(writes)
            if writes:
                spending.set()
                await asyncio.sleep(0.3)  # the spend's round trip, slowed
                raise StorageUnavailable("connection lost under the spend")
            return await real_row(self, statement, params, writes=writes)

        monkeypatch.setattr(pg_loop.LoopStatements, "row", failing_spend)
        before = len(_records(db))
        _cancel_at(db, flow.http.app, target, spending.wait)
        assert ran == ([True] if statements == "one" else [False, True])
        assert _records(db)[before:] == [("failed", Errno.APISRV_DOWN.value, 0, 0)]


@pytest.mark.parametrize("result", ["whole", "paged"])
def test_a_download_cancelled_while_its_thread_fails_is_audited_failed_once(
    served, monkeypatch, result
):
    """The thread's path (``all``): its spend with its record (whole) or its first page's
    read (paged, after the spend) fails while the drain's deadline cancels
    the request: audited once, failed 30003, its slot (if any) released."""
    flow, db = served
    token = flow.token()
    day = DAY if result == "whole" else ("2026-05-01 00:00:00", "2026-05-31 23:59:59")
    random = flow.get_random(token, "all", *day)["random"]
    target = flow.download_url(token, random, "all", *day)
    failing, cancelled = threading.Event(), threading.Event()

    def fails(*_args: Any) -> Any:
        failing.set()
        cancelled.wait(30)  # the rest of the thread's work outlasts the cancel
        raise StorageUnavailable("connection lost")

    service = flow.http.app.state.services.downloads
    if result == "whole":  # the spend with its record, one statement in autocommit
        monkeypatch.setattr(service.audit, "spent_in", fails)
    else:
        monkeypatch.setattr(downloads, "first_page", fails)
    slots = service.slots
    before = len(_records(db))
    _cancel_at(db, flow.http.app, target, _in_thread_until(failing), cancelled)
    assert _records(db)[before:] == [("failed", Errno.APISRV_DOWN.value, 0, 0)]
    assert slots.in_use == 0


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
    opened, cancelled = threading.Event(), threading.Event()
    service = downloads.DownloadService
    real = service._whole_export if result == "whole" else export.first_page

    def slowed(*args: Any) -> Any:
        made = real(*args)
        opened.set()
        cancelled.wait(30)  # the rest of the thread's work outlasts the cancel
        return made

    if result == "whole":
        monkeypatch.setattr(service, "_whole_export", slowed)
    else:
        monkeypatch.setattr(downloads, "first_page", slowed)
    slots = flow.http.app.state.services.downloads.slots
    before = len(_audit(db))
    _cancel_at(db, flow.http.app, target, _in_thread_until(opened), cancelled)
    assert _records(db)[before:] == [("cut", None, 0, 0)]
    assert slots.in_use == 0


def test_connections_the_server_closed_are_replaced_without_a_failed_request(served):
    flow, _db = served
    token = flow.token()
    for _ in range(3):
        assert _download(flow, token) == "csv"
    with _admin() as admin:  # as a restart or a failover does to every connection
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE application_name = 'cdrgate' AND pid <> pg_backend_pid()"
        ).fetchall()
    terminate_backends(*(pid for (pid,) in rows))
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
            terminate_backends(pid)
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


class _DyingAfter(_Dying):
    """An asyncpg connection whose backend is terminated just after a statement whose text
    holds ``marker`` ran (once), which then raises asyncpg's error for a connection lost
    under a statement: the statement committed, its answer never came."""

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        row = await self.conn.fetchrow(sql, *args)
        if self.marker in sql and not self.killed:
            import asyncpg

            pid = self.conn.get_server_pid()
            self.killed.append(pid)
            terminate_backends(pid)
            raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle")
        return row


def _committed_then_lost(monkeypatch, path: str) -> list[str]:
    """The spend's statement (with its record) runs and commits, then its answer is lost:
    the driver's error raised after it returned, as a connection that dies right then
    raises it. ``path``: the loop's one statement (``one``; ``terminated``: its backend
    terminated then, asyncpg's own error) or two (``csv_safe``), or the thread's (``all``:
    ``signed_spend`` in autocommit, psycopg's own error)."""
    lost: list[str] = []
    if path == "terminated":
        real_connect = pg_loop.LoopStatements._connect
        killed: list[int] = []

        async def connect(self):
            return _DyingAfter(await real_connect(self), "download_audit", killed)

        async def seen(self, statement, params, *, writes=False):
            try:
                return await real_row(self, statement, params, writes=writes)
            finally:
                if killed and not lost:
                    lost.append(path)

        monkeypatch.setattr(pg_loop.LoopStatements, "_connect", connect)
        real_row = pg_loop.LoopStatements.row
        monkeypatch.setattr(pg_loop.LoopStatements, "row", seen)
        return lost
    if path in ("transaction", "refused"):
        return _committed_then_lost_in_transaction(monkeypatch, path)
    if path == "thread":
        real_spend = signed_spend.spend_audited

        def spend_then_lose(conn: Any, spent: Any, record: Any) -> int | None:
            real_spend(conn, spent, record)
            lost.append(path)
            raise psycopg.OperationalError("server closed the connection unexpectedly")

        monkeypatch.setattr(signed_spend, "spend_audited", spend_then_lose)
        return lost
    real_row = pg_loop.LoopStatements.row

    async def row_then_lose(self, statement, params, *, writes=False):
        row = await real_row(self, statement, params, writes=writes)
        if writes:
            lost.append(path)
            raise StorageUnavailable("connection lost: the server closed it")
        return row

    monkeypatch.setattr(pg_loop.LoopStatements, "row", row_then_lose)
    return lost


def _committed_then_lost_in_transaction(monkeypatch, path: str) -> list[str]:
    """The write transaction that wrote the download's audit record (``open_download``'s,
    psycopg in a thread) commits, then its connection dies before the COMMIT's answer comes."""
    return lose_commit_after(monkeypatch, audit, "insert", path)


# The paths a download's spend with its audit record takes, and how each is asked for:
# ``transaction``, a stored random (``allowedip``) read whole in the write transaction;
# ``refused``, one whose day is empty where ``empty_download`` is ``errno`` (spent, refused).
_SETTINGS: dict[str, dict[str, Any]] = {
    "two": {"csv_safe": True},
    "refused": {"empty_download": "errno"},
}
_SELECTOR = {"thread": "all"}
_EMPTY_DAY = ("2026-05-27 00:00:00", "2026-05-27 23:59:59")


@pytest.mark.parametrize("path", ["one", "terminated", "two", "thread", "transaction", "refused"])
def test_a_spend_committed_whose_answer_was_lost_is_audited_failed_once(
    pg_db, clock, monkeypatch, path
):
    """The spend with its ``ok`` record (or its refusal's) commits and its connection is lost
    before the answer comes: the client hears 30003, its random is spent, and the attempt has
    one record, failed 30003 with nothing sent (its ``ok`` one, corrected: the client got
    nothing), counted once in the metrics (was: the ``ok`` record and a second, failed; on
    the write transaction's path until the twenty-fifth round too)."""
    selector = _SELECTOR.get(path, "1000")
    day = _EMPTY_DAY if path == "refused" else DAY
    stored = {"allowedip": "127.0.0.1"} if path in ("transaction", "refused") else {}
    with _serving(pg_db, clock, **_SETTINGS.get(path, {})) as (flow, db):
        token = flow.token()
        assert _download(flow, token) == "csv"  # the key, read once
        random = flow.get_random(token, selector, *day, **stored)["random"]
        flow.http.portal.call(db.close_on_loop)  # new connections, through any patched connect
        lost = _committed_then_lost(monkeypatch, path)
        before, counted = len(_records(db)), downloads_counted("cdr", "failed")
        response = flow.http.get(flow.download_url(token, random, selector, *day))
        assert response.json()["errno"] == Errno.APISRV_DOWN.value
        assert lost == [path]
        with db.read() as conn:
            spent = conn.execute(select(cdr_random.c.used_ms)).scalars().all()
        assert len(spent) == 2 and all(used is not None for used in spent)  # it committed
        assert _records(db)[before:] == [("failed", Errno.APISRV_DOWN.value, 0, 0)]
        assert downloads_counted("cdr", "failed") == counted + 1
        monkeypatch.undo()
        assert _download(flow, token) == "csv"  # the next, as ever


@pytest.mark.parametrize("path", ["one", "thread", "transaction"])
def test_a_lost_spend_whose_check_fails_keeps_one_record_and_logs_it(
    pg_db, clock, monkeypatch, caplog, path
):
    """The check on a new connection fails too (here the check alone: the database back
    for any write after it): nothing more is written, so the attempt keeps the one record
    its lost write committed (``ok``: the documented limit, the client heard 30003), the log
    names it, and the failure is counted once (was: a second record, failed, beside it)."""
    selector = _SELECTOR.get(path, "1000")
    stored = {"allowedip": "127.0.0.1"} if path == "transaction" else {}
    with _serving(pg_db, clock) as (flow, db):
        token = flow.token()
        assert _download(flow, token) == "csv"
        random = flow.get_random(token, selector, *DAY, **stored)["random"]
        lost = _committed_then_lost(monkeypatch, path)

        def unreachable(*_args: Any) -> bool:
            raise StorageUnavailable("still down")

        for check in ("fail_spent", "write_under"):
            monkeypatch.setattr(audit, check, unreachable)
        before, counted = len(_records(db)), downloads_counted("cdr", "failed")
        response = flow.http.get(flow.download_url(token, random, selector, *DAY))
        assert response.json()["errno"] == Errno.APISRV_DOWN.value
        assert lost == [path]
        assert [record[:2] for record in _records(db)[before:]] == [("ok", None)]
        assert downloads_counted("cdr", "failed") == counted + 1
        logged = [r.getMessage() for r in caplog.records if r.name == "cdrgate.audit"]
        assert len(logged) == 1 and "'outcome': 'ok'" in logged[0], logged


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


@pytest.mark.parametrize("case", ["spent-already", "mark-due"])
def test_a_download_cancelled_where_its_statement_spent_nothing_is_audited_cut_once(
    served, clock, monkeypatch, case
):
    """The one statement spends nothing (the random spent already; the token's sliding mark
    due), so the thread's path would decide the answer, and the drain's deadline cancels the
    request meanwhile: the attempt is audited once, ``cut`` with nothing sent, where it had no
    record at all; its random is left as it was."""
    flow, db = served
    token = flow.token()
    assert _download(flow, token) == "csv"  # the key, read once
    random = flow.get_random(token, "1000", *DAY)["random"]
    target = flow.download_url(token, random, "1000", *DAY)
    if case == "spent-already":
        assert flow.http.get(target).headers["content-type"] == OK
    else:
        clock.advance(TOUCH_EVERY_MS / 1000 + 1)
    with db.read() as conn:
        spent_before = conn.execute(select(cdr_random.c.used_ms)).scalars().all()
    real_row = pg_loop.LoopStatements.row
    reading = asyncio.Event()

    async def slow_row(self, statement, params, *, writes=False):
        reading.set()
        await asyncio.sleep(0.3)  # the statement's round trip, slowed
        return await real_row(self, statement, params, writes=writes)

    monkeypatch.setattr(pg_loop.LoopStatements, "row", slow_row)
    handed: list[str] = []
    submit = threads._workers.submit

    def recorded(call: Any) -> None:
        handed.append(getattr(call.work, "func", call.work).__name__)  # a partial's function
        submit(call)

    monkeypatch.setattr(threads._workers, "submit", recorded)
    before = len(_records(db))
    _cancel_at(db, flow.http.app, target, reading.wait)
    assert _records(db)[before:] == [("cut", None, 0, 0)]
    with db.read() as conn:
        assert conn.execute(select(cdr_random.c.used_ms)).scalars().all() == spent_before
    assert handed == ["cut_undecided"]  # the audit's write, and no open_download after the cancel


@pytest.mark.parametrize(
    ("query", "on_loop"),
    [
        # libpq's own: the loop honours it (asyncpg sent it to the server, which refused it
        # as a setting, and every statement on the loop failed)
        ({"connect_timeout": "5"}, True),
        # libpq's alone, about which server or how it is trusted: psycopg runs the flows
        ({"sslsni": "1"}, False),
    ],
)
def test_a_url_with_libpq_parameters_still_serves_small_flows(clock, query, on_loop):
    with postgres_schema() as url:
        db = Database(make_url(url).update_query_dict(query).render_as_string(False))
        try:
            schema.upgrade(db)
            set_api_user(db, API_USER, API_PASSWORD, int(clock() * 1000))
            assert (db.loop_statements is not None) == on_loop
            settings = Settings(database=db.url, access_log=False)
            app = create_app(settings, database=db, clock=clock)
            with TestClient(app, base_url="http://pbx.test:8088", client=("127.0.0.1", 5)) as http:
                flow = Flow(http)
                token = flow.token()
                for _ in range(3):  # the first reads the key in a thread; then the loop
                    assert flow.get_random(token, "1000", *DAY)["status"] == "Success"
        finally:
            db.dispose()
