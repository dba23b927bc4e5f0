"""get_random and a short download run on the event loop when the SQLite writer is free, and in
a worker thread when it is not: the answer is the same either way, and nothing happens twice."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from starlette.types import Message

from cdrgate.api.threads import in_thread
from cdrgate.errors import StorageUnavailable
from cdrgate.services.downloads import RandomRequest
from cdrgate.services.export import ExportSlots
from cdrgate.storage import audit, tokens
from cdrgate.storage.db import CommitFailed, Database
from tests import cancelled_request
from tests.conftest import make_cdr
from tests.counted import downloads_counted

DAY_START, DAY_END = "2026-05-28 00:00:00", "2026-05-28 23:59:59"


@contextmanager
def another_process_writing(client, monkeypatch) -> Iterator[threading.Event]:
    """A SQLite writer outside this process, held until a request has gone to a worker thread
    (the event is set then)."""
    db = client.app.state.services.downloads.db
    if not db.writes_on_loop:
        pytest.skip("only a SQLite file writes on the loop")
    other = sqlite3.connect(db.engine.url.database, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    handed_over = threading.Event()

    async def recording(func, *args, **options):
        handed_over.set()
        return await in_thread(func, *args, **options)

    monkeypatch.setattr("cdrgate.api.cdr.in_thread", recording)

    def release_when_handed_over() -> None:
        handed_over.wait(timeout=60)
        other.execute("ROLLBACK")

    releaser = threading.Thread(target=release_when_handed_over)
    releaser.start()
    try:
        yield handed_over
    finally:
        handed_over.set()
        releaser.join()
        other.close()
        monkeypatch.undo()


def test_a_stored_get_random_waits_in_a_thread_while_another_process_writes(
    client, flow, monkeypatch
):
    token = flow.token()
    flow.get_random(token, "1000", DAY_START, DAY_END)  # the signing key, read once
    with another_process_writing(client, monkeypatch) as handed_over:
        # allowedip: a random that is stored, so get_random writes.
        answer = flow.get_random(token, "1000", DAY_START, DAY_END, allowedip="192.0.2.1")
        assert handed_over.is_set()
    assert answer["status"] == "Success"


def test_a_signed_get_random_answers_on_the_loop_while_another_process_writes(
    client, flow, monkeypatch
):
    token = flow.token()
    flow.get_random(token, "1000", DAY_START, DAY_END)  # the signing key, read once
    with another_process_writing(client, monkeypatch) as handed_over:
        answer = flow.get_random(token, "1000", DAY_START, DAY_END)
        assert not handed_over.is_set()  # a read: SQLite's write lock is not needed
    assert answer["status"] == "Success"


def test_the_first_signed_get_random_reads_the_key_in_a_thread(client, flow, monkeypatch):
    token = flow.token()
    with another_process_writing(client, monkeypatch) as handed_over:
        # The key's first read is a write, which may wait: never on the loop.
        answer = flow.get_random(token, "1000", DAY_START, DAY_END)
        assert handed_over.is_set()
    assert answer["status"] == "Success"


def test_a_short_download_waits_in_a_thread_while_another_process_writes_and_is_audited_once(
    client, flow, db, monkeypatch
):
    token = flow.token()
    random = flow.get_random(token, "1000", DAY_START, DAY_END)["random"]
    with another_process_writing(client, monkeypatch) as handed_over:
        response = client.get(flow.download_url(token, random, "1000", DAY_START, DAY_END))
        assert handed_over.is_set()
    # An empty day: 20021 (empty_download=errno), audited once, in the redeem's transaction.
    assert response.json() == {"status": "Failed", "errno": "20021"}
    with db.read() as conn:
        records = audit.query(conn, limit=10)
    assert [(r.outcome, r.errno) for r in records] == [("failed", "20021")]


def test_a_download_whose_shared_commit_fails_hears_30003_is_audited_once_and_can_be_retried(
    client, flow, db, monkeypatch
):
    _skip_unless_writes_on_loop(client)
    token = flow.token()
    random = flow.get_random(token, "1000", DAY_START, DAY_END)["random"]
    _group_commits(monkeypatch, rolled_back=True)
    url = flow.download_url(token, random, "1000", DAY_START, DAY_END)
    assert client.get(url).json() == {"status": "Failed", "errno": "30003"}
    with db.read() as conn:
        records = audit.query(conn, limit=10)
    assert [(r.outcome, r.errno) for r in records] == [("failed", "30003")]
    monkeypatch.undo()
    # The random was not spent: the redeem went with the commit. An empty day is 20021.
    assert client.get(url).json() == {"status": "Failed", "errno": "20021"}


def test_a_signed_get_random_whose_turns_group_commit_fails_still_answers_its_random(
    client, flow, db
):
    """Its token read (one statement) does not depend on the other requests' writes, so their
    failed commit is not its own: Success, and the random downloads."""
    downloads = client.app.state.services.downloads
    if not downloads.db.writes_on_loop:
        pytest.skip("only a SQLite file writes on the loop")
    token = flow.token()
    flow.get_random(token, "1000", DAY_START, DAY_END)  # the signing key, read once
    with db.write() as conn:
        conn.exec_driver_sql("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("CREATE TABLE child (parent INTEGER REFERENCES parent (id))")

    def orphan() -> None:  # a request whose writes fail the turn's commit
        with downloads.db.write() as conn:
            conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
            conn.exec_driver_sql("INSERT INTO child VALUES (99)")

    ask = RandomRequest(token, "1000", DAY_START, DAY_END, None, "127.0.0.1")

    async def turn() -> list[object]:
        return await asyncio.gather(
            downloads.db.run_on_loop(orphan),
            downloads.db.run_on_loop(lambda: downloads.issue_random(ask)),
            return_exceptions=True,
        )

    failed, random = asyncio.run(turn())
    assert isinstance(failed, CommitFailed)
    assert isinstance(random, str) and len(random) == 32
    assert client.get(flow.download_url(token, random, "1000", DAY_START, DAY_END)).json() == {
        "status": "Failed", "errno": "20021",
    }  # fmt: skip


def test_a_signed_get_random_whose_token_read_finds_sqlite_busy_on_the_loop_answers_from_a_thread(
    client, flow, monkeypatch
):
    """SQLite may answer a WAL reader busy (another connection recovering or resetting the
    WAL); the loop's connection has no busy timeout, so the request is run again in a thread."""
    _skip_unless_writes_on_loop(client)
    token = flow.token()
    flow.get_random(token, "1000", DAY_START, DAY_END)  # the signing key, read once
    last_seen = tokens.last_seen
    busy_on_loop: list[sqlite3.OperationalError] = []

    def busy_once_on_the_loop(conn, token_hash):
        if Database.in_loop_call() and not busy_on_loop:
            busy = sqlite3.OperationalError("database is locked")
            busy.sqlite_errorcode = sqlite3.SQLITE_BUSY
            busy_on_loop.append(busy)
            raise busy
        return last_seen(conn, token_hash)

    handed_over = threading.Event()

    async def recording(func, *args, **options):
        handed_over.set()
        return await in_thread(func, *args, **options)

    monkeypatch.setattr(tokens, "last_seen", busy_once_on_the_loop)
    monkeypatch.setattr("cdrgate.api.cdr.in_thread", recording)
    answer = flow.get_random(token, "1000", DAY_START, DAY_END)
    assert busy_on_loop and handed_over.is_set()
    assert answer["status"] == "Success" and len(answer["random"]) == 32


def _loop_statements(client) -> list[str]:
    """Every statement the loop's connection runs from now on (opened by an earlier request)."""
    loop_db = client.app.state.services.downloads.db
    assert loop_db._loop_conn is not None
    statements: list[str] = []
    loop_db._loop_conn.connection.dbapi_connection.set_trace_callback(statements.append)
    return statements


def test_a_small_signed_download_on_the_loop_is_four_statements_without_a_savepoint(
    client, flow, add_cdrs
):
    _skip_unless_writes_on_loop(client)
    add_cdrs(make_cdr())
    token = flow.token()
    flow.get_random(token, "1000", DAY_START, DAY_END)  # the signing key, read once
    random = flow.get_random(token, "1000", DAY_START, DAY_END)["random"]  # on the loop
    statements = _loop_statements(client)
    response = client.get(flow.download_url(token, random, "1000", DAY_START, DAY_END))
    assert response.status_code == 200 and len(response.text.splitlines()) == 2
    # The token's read, the day's read, the spend, the audit record: in the turn's group
    # commit, with no SAVEPOINT and RELEASE around them.
    first_words = [" ".join(statement.split()[:3]) for statement in statements]
    assert first_words == [
        "BEGIN IMMEDIATE", "SELECT api_token.account, api_token.last_seen_ms,", "SELECT cdr.line FROM",
        "INSERT INTO cdr_random", "INSERT INTO download_audit", "COMMIT",
    ]  # fmt: skip


def test_a_small_download_whose_audit_record_fails_after_its_spend_hears_30003_once_and_can_be_retried(
    client, flow, db, add_cdrs, monkeypatch
):
    """Its spend has no SAVEPOINT to be undone by: the whole group commit is rolled back, so
    the random is not spent, and the attempt is audited once (failed, 30003)."""
    _skip_unless_writes_on_loop(client)
    add_cdrs(make_cdr())
    token = flow.token()
    random = flow.get_random(token, "1000", DAY_START, DAY_END)["random"]
    insert = audit.insert
    failed: list[str] = []

    def fails_once(conn, values):
        if not failed:
            failed.append(values["outcome"])
            raise sqlite3.OperationalError("disk I/O error")
        return insert(conn, values)

    monkeypatch.setattr(audit, "insert", fails_once)
    url = flow.download_url(token, random, "1000", DAY_START, DAY_END)
    assert client.get(url).json() == {"status": "Failed", "errno": "30003"}
    assert failed == ["ok"]  # it failed after the spend, on the record of a sent download
    with db.read() as conn:
        records = audit.query(conn, limit=10)
    assert [(r.outcome, r.errno) for r in records] == [("failed", "30003")]
    response = client.get(url)
    assert response.status_code == 200 and len(response.text.splitlines()) == 2


@pytest.mark.parametrize("result", ["whole", "paged"])
def test_a_download_cancelled_while_its_group_commit_is_open_is_audited_unsent(
    client, flow, db, add_cdrs, monkeypatch, result
):
    """The drain's deadline cancels a short download waiting for the group commit holding its
    spend and audit record: the commit lands, and the record says nothing was sent (``cut``,
    0 rows, 0 bytes), where it said ``ok`` (a whole result) or was never written (paged)."""
    _skip_unless_writes_on_loop(client)
    add_cdrs(make_cdr())
    if result == "paged":  # more than a page in the day: a paged export, its record at its end
        monkeypatch.setattr("cdrgate.services.downloads.PAGE_ROWS", 0)
    token = flow.token()
    flow.get_random(token, "1000", DAY_START, DAY_END)  # the signing key, read once
    random = flow.get_random(token, "1000", DAY_START, DAY_END)["random"]
    target = flow.download_url(token, random, "1000", DAY_START, DAY_END)
    requests: list[asyncio.Future[None]] = []
    _group_commits(monkeypatch, cancelling=requests, rolled_back=False)
    _cancelled_at_its_commit(client, target, requests)
    with db.read() as conn:
        records = audit.query(conn, limit=10)
        used = conn.exec_driver_sql("SELECT count(*) FROM cdr_random").scalar()
    assert used == 1  # spent: the commit went on
    assert [(r.outcome, r.errno, r.rows, r.bytes) for r in records] == [("cut", None, 0, 0)]
    slots = client.app.state.services.downloads.slots
    assert slots.in_use == 0


@pytest.mark.parametrize("result", ["whole", "paged"])
@pytest.mark.parametrize("cancelled", [False, True], ids=["answered", "cancelled"])
def test_a_download_whose_group_commit_fails_is_audited_failed_once(
    client, flow, db, add_cdrs, monkeypatch, result, cancelled
):
    """The group commit holding a short download's spend (and, whole, its record) fails: the
    attempt is audited once, failed 30003, its slot (paged) released, whether the request
    hears 30003 or the drain's deadline cancels it while it waits for that commit (it had no
    record then: ``commit_failed`` was left to the answer that never came)."""
    _skip_unless_writes_on_loop(client)
    add_cdrs(make_cdr(), make_cdr(callid="b.1", timestart="2026-05-28 11:00:00"))
    if result == "paged":  # a first page of one row of two: a paged export, its slot taken
        monkeypatch.setattr("cdrgate.services.downloads.PAGE_ROWS", 0)
        monkeypatch.setattr("cdrgate.services.export.MAX_PAGE_ROWS", 1)
    token = flow.token()
    flow.get_random(token, "1000", DAY_START, DAY_END)  # the signing key, read once
    random = flow.get_random(token, "1000", DAY_START, DAY_END)["random"]
    target = flow.download_url(token, random, "1000", DAY_START, DAY_END)
    requests: list[asyncio.Future[None]] = []
    slots = client.app.state.services.downloads.slots
    taken: list[str] = []
    acquire = slots.acquire

    def counted(account: str) -> ExportSlots.Slot:
        taken.append(account)
        return acquire(account)

    monkeypatch.setattr(slots, "acquire", counted)

    _group_commits(monkeypatch, cancelling=requests, rolled_back=True)
    if cancelled:
        _cancelled_at_its_commit(client, target, requests)
    else:
        assert client.get(target).json() == {"status": "Failed", "errno": "30003"}
    with db.read() as conn:
        records = audit.query(conn, limit=10)
        used = conn.exec_driver_sql("SELECT count(*) FROM cdr_random").scalar()
    assert used == 0  # the spend went with the commit
    assert [(r.outcome, r.errno, r.rows, r.bytes) for r in records] == [("failed", "30003", 0, 0)]
    assert len(taken) == (1 if result == "paged" else 0)
    assert slots.in_use == 0


def test_a_small_download_cancelled_while_its_body_is_sent_is_audited_cut(
    client, flow, db, add_cdrs
):
    """The drain's deadline cancels a small download whose whole body is being sent (the
    connection takes nothing more): its record, written ``ok`` with its spend, says ``cut``
    with nothing counted as sent, as a streamed download's does."""
    add_cdrs(make_cdr())
    token = flow.token()
    flow.get_random(token, "1000", DAY_START, DAY_END)  # the signing key, read once
    random = flow.get_random(token, "1000", DAY_START, DAY_END)["random"]
    target = flow.download_url(token, random, "1000", DAY_START, DAY_END)

    async def cancelled_download() -> None:
        sent: list[Message] = []
        request = cancelled_request.get(client.app, target, sent, stalled=True)
        while not sent:
            await asyncio.sleep(0.01)
        request.cancel()  # the drain's deadline, while the send waits
        await asyncio.wait([request])
        assert request.cancelled()
        assert [message["type"] for message in sent] == ["http.response.start"]
        await client.app.state.services.downloads.db.close_on_loop()  # PostgreSQL's, if any

    asyncio.run(cancelled_download())
    with db.read() as conn:
        records = audit.query(conn, limit=10)
    assert [(r.outcome, r.rows, r.bytes) for r in records] == [("cut", 0, 0)]


def _skip_unless_writes_on_loop(client) -> None:
    if not client.app.state.services.downloads.db.writes_on_loop:
        pytest.skip("only a SQLite file writes on the loop")


def _group_commits(
    monkeypatch, *, cancelling: list[asyncio.Future[None]] | None = None, rolled_back: bool
) -> None:
    """Each group commit first cancels ``cancelling[0]`` (the drain's deadline, while that
    request waits for this very commit) and, ``rolled_back``, fails as SQLite fails one on an
    I/O error or a full disk (it rolls the transaction back itself)."""
    requests = [] if cancelling is None else cancelling  # filled later: the same list
    commit = Database._commit_batch

    def group_commit(self, batch):
        if requests and not requests[0].done():
            requests[0].cancel()
        if rolled_back:
            batch.raw.rollback()
        commit(self, batch)

    monkeypatch.setattr(Database, "_commit_batch", group_commit)


def _downloads_counted() -> dict[str, float]:
    """``cdrgate_downloads_total`` for cdr downloads, by outcome (this process's registry)."""
    return {
        outcome: downloads_counted("cdr", outcome) for outcome in ("ok", "failed", "aborted", "cut")
    }


def _counted(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {outcome: after[outcome] - before[outcome] for outcome in after}


def _never_issued(random: str) -> str:
    """A random of the right shape that the server never issued (its signature broken)."""
    return random[:-4] + ("AAAA" if not random.endswith("AAAA") else "BBBB")


def _attempt(flow, attempt: str) -> tuple[str, str, str | None]:
    """A token and a random for ``attempt`` of the day (``unknown-random``: a random never
    issued; ``unknown-token``: a dead token; else both good), and the errno a refusal of it
    answers (an empty day's 20021; None for a dead token's, whose answer carries none)."""
    token = flow.token()
    random = flow.get_random(token, "1000", DAY_START, DAY_END)["random"]
    if attempt == "unknown-random":
        return token, _never_issued(random), "20020"
    if attempt == "unknown-token":
        return "0" * len(token), random, None
    return token, random, "20021"


def _cancelled_at_its_commit(client, url: str, requests: list[asyncio.Future[None]]) -> None:
    """GET ``url`` as ``requests[0]``, which the test's ``_commit_batch`` cancels while it
    waits for that commit: nothing is sent."""

    async def cancelled_download() -> None:
        sent: list[Message] = []
        requests.append(cancelled_request.get(client.app, url, sent))
        await asyncio.wait(requests)
        assert requests[0].cancelled() and sent == []

    asyncio.run(cancelled_download())


@pytest.mark.parametrize(
    "attempt",
    ["empty-day", "unknown-random", "unknown-token", "spent-whole"],
)
@pytest.mark.parametrize("cancelled", [False, True], ids=["answered", "cancelled"])
def test_a_download_whose_group_commit_fails_is_counted_once_as_audited(
    client, flow, db, add_cdrs, monkeypatch, attempt, cancelled
):
    """A download answered on the loop whose group commit then fails is audited once, failed
    30003 (``commit_failed``), and counted once so in ``cdrgate_downloads_total``: a refusal
    recorded in the failed commit (an empty day with its spend, ``spent_in``; a random never
    issued, ``failed_in``; a dead token, ``record``) was counted there too, and a spend's
    ``ok`` must not be counted at all (its export is never sent). The same when the drain's
    deadline cancels the request while it waits for that commit."""
    _skip_unless_writes_on_loop(client)
    if attempt == "spent-whole":
        add_cdrs(make_cdr())
    token, random, _errno = _attempt(flow, attempt)
    requests: list[asyncio.Future[None]] = []
    _group_commits(monkeypatch, cancelling=requests, rolled_back=True)
    before = _downloads_counted()
    url = flow.download_url(token, random, "1000", DAY_START, DAY_END)
    if cancelled:
        _cancelled_at_its_commit(client, url, requests)
    else:
        assert client.get(url).json() == {"status": "Failed", "errno": "30003"}
    after = _downloads_counted()
    with db.read() as conn:
        records = audit.query(conn, limit=10)
    assert [(r.outcome, r.errno) for r in records] == [("failed", "30003")]
    assert _counted(before, after) == {"ok": 0, "failed": 1, "aborted": 0, "cut": 0}


@pytest.mark.parametrize("attempt", ["empty-day", "unknown-random", "unknown-token"])
@pytest.mark.parametrize("cancelled", [False, True], ids=["answered", "cancelled"])
def test_a_refusal_on_the_loop_is_counted_once_its_group_commit_commits(
    client, flow, db, monkeypatch, attempt, cancelled
):
    """A refusal's count waits for the group commit holding its record (``Database.on_commit``)
    and is not lost with it: counted once when that commits, whether the request hears its
    errno or the drain's deadline cancels it while it waits for that commit."""
    _skip_unless_writes_on_loop(client)
    token, random, errno = _attempt(flow, attempt)
    requests: list[asyncio.Future[None]] = []
    _group_commits(monkeypatch, cancelling=requests, rolled_back=False)
    before = _downloads_counted()
    url = flow.download_url(token, random, "1000", DAY_START, DAY_END)
    if cancelled:
        _cancelled_at_its_commit(client, url, requests)
    else:
        answer = client.get(url).json()
        assert answer["status"] == "Failed" and (errno is None or answer["errno"] == errno)
    after = _downloads_counted()
    with db.read() as conn:
        records = audit.query(conn, limit=10)
    assert [r.outcome for r in records] == ["failed"]
    assert errno is None or [r.errno for r in records] == [errno]
    assert _counted(before, after) == {"ok": 0, "failed": 1, "aborted": 0, "cut": 0}


def test_a_refusal_whose_thread_transaction_fails_to_commit_is_counted_once(
    client, flow, db, monkeypatch
):
    """The thread's path (``open_download`` in a worker: PostgreSQL's, SQLite's when the
    writer is busy): a refusal recorded in the redeem's transaction, which then fails to
    commit, is audited failed 30003 once and counted once (it was counted at the refusal,
    then again with the 30003 record)."""
    downloads = client.app.state.services.downloads
    token = flow.token()
    random = flow.get_random(token, "1000", DAY_START, DAY_END)["random"]
    unknown = _never_issued(random)
    monkeypatch.setattr(type(downloads), "runs_on_loop", lambda self, ask: False)
    real_write = Database._write
    failed: list[bool] = []

    @contextmanager
    def commit_fails_once(self, durable):
        with real_write(self, durable) as conn:
            yield conn
            if not failed:  # the redeem's transaction, its refusal recorded: rolled back
                failed.append(True)
                raise StorageUnavailable("the commit failed")

    monkeypatch.setattr(Database, "_write", commit_fails_once)
    before = _downloads_counted()
    url = flow.download_url(token, unknown, "1000", DAY_START, DAY_END)
    assert client.get(url).json() == {"status": "Failed", "errno": "30003"}
    after = _downloads_counted()
    assert failed == [True]
    with db.read() as conn:
        records = audit.query(conn, limit=10)
    assert [(r.outcome, r.errno) for r in records] == [("failed", "30003")]
    assert _counted(before, after) == {"ok": 0, "failed": 1, "aborted": 0, "cut": 0}
