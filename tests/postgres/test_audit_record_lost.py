"""A download audited when it ends (a recording, a paged CDR download) whose record's write
loses its connection on PostgreSQL: the record is written again, once, on a new connection.
A real server on loopback, a real PostgreSQL whose backend is terminated mid-write."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from cdrgate.app import create_app
from cdrgate.ingest.store import store_records
from cdrgate.services.auth import set_api_user
from cdrgate.settings import Settings
from cdrgate.storage import audit
from cdrgate.storage.db import Database
from cdrgate.storage.tables import download_audit
from tests.conftest import API_PASSWORD, API_USER, make_cdr
from tests.counted import downloads_counted
from tests.live import live_server
from tests.postgres.lost_commit import lose_commit_after, lose_connection_before_commit
from tests.recordings.conftest import WAV, RecordingFlow
from tests.waiting import wait_until

NAME = "20260528100000-1000-0215550100.wav"


@pytest.fixture
def rec(pg_db: Database, clock, tmp_path) -> Iterator[RecordingFlow]:
    folder = tmp_path / "recordings"
    (folder / "2026" / "05" / "28").mkdir(parents=True)
    (folder / "2026" / "05" / "28" / NAME).write_bytes(WAV)
    set_api_user(pg_db, API_USER, API_PASSWORD, int(clock() * 1000))
    store_records(pg_db, [make_cdr(recording=NAME)])
    settings = Settings(database=pg_db.url, access_log=False, recordings=str(folder))
    app = create_app(settings, database=pg_db, clock=clock)
    with live_server(app) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
        yield RecordingFlow(http)


def _records(db: Database) -> list[tuple[str, str, int, int]]:
    a = download_audit.c
    with db.read() as conn:
        rows = conn.execute(select(a.kind, a.outcome, a.rows, a.bytes).order_by(a.id)).all()
    return [tuple(row) for row in rows]


def _ok_counted() -> float:
    return downloads_counted("recording", "ok")


def test_a_record_whose_connection_is_lost_before_its_commit_is_written_again(
    rec, pg_db, monkeypatch
):
    token = rec.token()
    random = rec.random(token, NAME)
    lost = lose_connection_before_commit(monkeypatch, audit, "insert", "record")
    counted = _ok_counted()
    assert rec.fetch(token, NAME, random).content == WAV
    # The record is written after the last byte left, off the loop; counted once it is.
    wait_until(lambda: _ok_counted() == counted + 1, "the download counted")
    assert lost == ["record"]
    # Was: no record at all, only a log line.
    assert _records(pg_db) == [("recording", "ok", 1, len(WAV))]


def test_a_record_whose_commit_landed_before_its_answer_was_lost_is_kept_once(
    rec, pg_db, monkeypatch
):
    token = rec.token()
    random = rec.random(token, NAME)
    lost = lose_commit_after(monkeypatch, audit, "insert", "record")
    counted = _ok_counted()
    assert rec.fetch(token, NAME, random).content == WAV
    # The record is written after the last byte left, off the loop; counted once it is.
    wait_until(lambda: _ok_counted() == counted + 1, "the download counted")
    assert lost == ["record"]
    # Written again under the id its first write got: the one record, not two.
    assert _records(pg_db) == [("recording", "ok", 1, len(WAV))]
