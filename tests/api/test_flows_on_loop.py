"""get_random and a short download run on the event loop when the SQLite writer is free, and in
a worker thread when it is not: the answer is the same either way, and nothing happens twice."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from starlette.concurrency import run_in_threadpool

from cdrgate.storage import audit

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

    async def recording(func, *args):
        handed_over.set()
        return await run_in_threadpool(func, *args)

    monkeypatch.setattr("cdrgate.api.cdr.run_in_threadpool", recording)

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


def test_get_random_waits_in_a_thread_while_another_process_writes(client, flow, monkeypatch):
    token = flow.token()
    with another_process_writing(client, monkeypatch) as handed_over:
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
