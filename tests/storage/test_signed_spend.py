"""A signed random's spend with its audit record in one PostgreSQL statement: one spend, one
record, and nothing written for a random spent already; a spend whose answer was lost found
committed by its random and record (``audit.fail_spent``); a write transaction whose COMMIT's
answer was lost audited once under its record's id (``audit.write_under``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import pytest
from sqlalchemy import func, literal_column, select, text

from cdrgate.storage import audit, signed_spend
from cdrgate.storage.db import Database
from cdrgate.storage.randoms import RandomRow
from cdrgate.storage.tables import cdr_random, download_audit
from tests.conftest import migrated_postgres

T = TypeVar("T")

ROW = RandomRow(1_900_000_000_000, "a" * 64, "b" * 64, "1000", 100, 200, "127.0.0.1", None, 1)
RECORD = {
    "at_ms": 1_800_000_000_000, "account": "api", "client_ip": "127.0.0.1",
    "api_version": "v1.1.0", "selector": "1000", "starttime": "s", "endtime": "e", "rows": 3,
    "bytes": 120, "outcome": "ok", "errno": None, "kind": "cdr",
}  # fmt: skip
FAILED = {**RECORD, "outcome": "failed", "errno": "30003", "rows": 0, "bytes": 0}


@pytest.fixture
def pg_db() -> Iterator[Database]:
    with migrated_postgres() as database:
        yield database


def _counts(db: Database) -> tuple[int, int]:
    with db.read() as conn:
        randoms = conn.execute(select(func.count()).select_from(cdr_random)).scalar_one()
        records = conn.execute(select(func.count()).select_from(download_audit)).scalar_one()
    return randoms, records


def _spend(db: Database, row: RandomRow = ROW) -> int | None:
    statements = db.autocommit()
    assert statements is not None
    with statements as conn:
        return signed_spend.spend_audited(conn, row, RECORD)


def test_the_spend_writes_its_row_and_record_and_returns_the_records_id(pg_db) -> None:
    record_id = _spend(pg_db)
    assert record_id is not None
    with pg_db.read() as conn:
        stored = conn.execute(select(download_audit)).one()._asdict()
        spent = conn.execute(select(cdr_random)).one()
    assert stored == {"id": record_id, **RECORD}
    assert tuple(spent) == ROW


def test_a_random_spent_already_writes_nothing_and_returns_none(pg_db) -> None:
    assert _spend(pg_db) is not None
    assert _spend(pg_db, ROW._replace(used_ms=2)) is None
    assert _counts(pg_db) == (1, 1)


def test_concurrent_spends_of_one_random_leave_one_row_and_one_record(pg_db) -> None:
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda _: _spend(pg_db), range(8)))
    assert sum(record_id is not None for record_id in ids) == 1
    assert _counts(pg_db) == (1, 1)


def test_sqlite_has_no_autocommit_connection(db) -> None:
    if not db.is_sqlite:
        pytest.skip("SQLite's answer")
    assert db.autocommit() is None


def _fail_spent(db: Database, row: RandomRow = ROW) -> bool:
    with db.write() as conn:
        return audit.fail_spent(conn, row, RECORD, FAILED)


def _outcomes(db: Database) -> list[tuple[str, str | None, int, int]]:
    a = download_audit.c
    with db.read() as conn:
        rows = conn.execute(select(a.outcome, a.errno, a.rows, a.bytes).order_by(a.id))
        return [(row[0], row[1], row[2], row[3]) for row in rows]


def test_a_lost_spend_found_committed_has_its_record_corrected_failed(pg_db) -> None:
    """``audit.fail_spent``: the spend committed (its answer lost): its record, and only it,
    is corrected to failed with nothing sent; asked again, it is no longer the one sent."""
    with pg_db.write() as conn:  # an earlier download alike in every key (same millisecond)
        audit.insert(conn, RECORD)
    assert _spend(pg_db) is not None
    assert _fail_spent(pg_db)
    assert _outcomes(pg_db) == [("ok", None, 3, 120), ("failed", "30003", 0, 0)]
    assert not _fail_spent(pg_db)


def test_a_lost_spend_that_did_not_commit_is_not_found(pg_db) -> None:
    """Not committed: the random unspent, or spent by another attempt (another time, or
    another transaction than the record alike): nothing found, nothing changed."""
    assert not _fail_spent(pg_db)
    assert _spend(pg_db) is not None
    assert not _fail_spent(pg_db, ROW._replace(used_ms=2))  # spent by another attempt
    with pg_db.write() as conn:  # a random spent apart from a record alike: two transactions
        conn.execute(cdr_random.insert().values(ROW._replace(random_hash="c" * 64)._asdict()))
    with pg_db.write() as conn:
        audit.insert(conn, RECORD)
    assert not _fail_spent(pg_db, ROW._replace(random_hash="c" * 64))
    assert _outcomes(pg_db) == [("ok", None, 3, 120), ("ok", None, 3, 120)]


def _records(db: Database) -> list[tuple[int, str, str | None, int, int]]:
    a = download_audit.c
    with db.read() as conn:
        rows = conn.execute(select(a.id, a.outcome, a.errno, a.rows, a.bytes).order_by(a.id))
        return [(row[0], row[1], row[2], row[3], row[4]) for row in rows]


def _write_under(db: Database, record_id: int) -> None:
    with db.write() as conn:
        audit.write_under(conn, record_id, FAILED)


@pytest.mark.parametrize("committed", [True, False])
def test_a_lost_write_is_audited_once_under_its_records_id(pg_db, committed: bool) -> None:
    """``audit.write_under``: the write transaction that wrote record ``id`` lost its COMMIT's
    answer. Committed, that record is corrected to failed with nothing sent; not (rolled
    back), the failed record is written under that id: one record either way."""
    with pg_db.engine.connect() as conn, conn.begin() as transaction:
        record_id = audit.insert(conn, RECORD)
        if not committed:
            transaction.rollback()
    _write_under(pg_db, record_id)
    assert _records(pg_db) == [(record_id, "failed", "30003", 0, 0)]


def _waits_for_it(db: Database, table: str, work: Callable[[], T]) -> Future[T]:
    """``work`` started in a thread, once it is seen waiting for a lock in an insert into
    ``table`` (in ``pg_stat_activity``: no sleep), the caller to end what it waits for."""
    pool = ThreadPoolExecutor(1)
    running = pool.submit(work)
    pool.shutdown(wait=False)
    waiting = (
        select(func.count())
        .select_from(text("pg_stat_activity"))
        .where(
            literal_column("wait_event_type") == "Lock",
            literal_column("query").like(f"INSERT INTO {table}%"),
        )
    )
    with db.engine.connect() as watcher:
        while not running.done() and watcher.execute(waiting).scalar_one() == 0:
            watcher.rollback()  # a fresh snapshot of the activity each time
    assert not running.done()  # it waits
    return running


@pytest.mark.parametrize("commits", [True, False])
def test_a_lost_write_still_running_is_waited_for_not_doubled(
    pg_db, monkeypatch, commits: bool
) -> None:
    """The lost transaction has not ended yet (its COMMIT on its way, its backend unaware its
    client is gone): ``write_under`` waits for it, then corrects its record or writes the
    failed one; a look then (before it ended) would have found nothing and written a second."""
    monkeypatch.setattr(audit, "LOST_WRITE_WAIT", "10min")  # the wait's bound, out of the way
    with pg_db.engine.connect() as conn:
        transaction = conn.begin()
        record_id = audit.insert(conn, RECORD)
        auditing = _waits_for_it(pg_db, "download_audit", lambda: _write_under(pg_db, record_id))
        transaction.commit() if commits else transaction.rollback()
        auditing.result()
    assert _records(pg_db) == [(record_id, "failed", "30003", 0, 0)]


@pytest.mark.parametrize("commits", [True, False])
def test_a_lost_spend_still_running_is_waited_for(pg_db, monkeypatch, commits: bool) -> None:
    """The one statement's spend has not ended yet: ``fail_spent`` waits for it, then finds
    its record committed (and corrects it) or not (and the random is left unspent); a look
    before it ended would have found nothing (then the caller writes a second record)."""
    monkeypatch.setattr(audit, "LOST_WRITE_WAIT", "10min")
    with pg_db.engine.connect() as conn:
        transaction = conn.begin()
        assert signed_spend.spend_audited(conn, ROW, RECORD) is not None
        looking = _waits_for_it(pg_db, "cdr_random", lambda: _fail_spent(pg_db))
        transaction.commit() if commits else transaction.rollback()
        assert looking.result() == commits
    expected = [("failed", "30003", 0, 0)] if commits else []
    assert _outcomes(pg_db) == expected
    assert _counts(pg_db) == ((1, 1) if commits else (0, 0))
