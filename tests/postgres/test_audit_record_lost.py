"""A download audited when it ends (a recording, a paged CDR download) whose record's write
loses its connection on PostgreSQL: the record is written again, once, on a new connection.
A real server on loopback, a real PostgreSQL whose backend is terminated mid-write."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from cdrgate.storage import audit
from cdrgate.storage.db import Database
from cdrgate.storage.tables import download_audit
from tests.counted import downloads_counted
from tests.live import live_server
from tests.postgres.lost_commit import lose_commit_after, lose_connection_before_commit
from tests.recordings.conftest import WAV, RecordingFlow, app_with_one_recording
from tests.waiting import wait_until

NAME = "20260528100000-1000-0215550100.wav"


@pytest.fixture
def rec(pg_db: Database, clock, tmp_path) -> Iterator[RecordingFlow]:
    app = app_with_one_recording(pg_db, clock, tmp_path / "recordings", NAME)
    with live_server(app) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
        yield RecordingFlow(http)


def _records(db: Database) -> list[tuple[str, str, int, int]]:
    a = download_audit.c
    with db.read() as conn:
        rows = conn.execute(select(a.kind, a.outcome, a.rows, a.bytes).order_by(a.id)).all()
    return [tuple(row) for row in rows]


def _ok_counted() -> float:
    return downloads_counted("recording", "ok")


@pytest.mark.parametrize(
    "lose",
    [
        # Was: no record at all, only a log line.
        pytest.param(lose_connection_before_commit, id="lost-before-its-commit"),
        # Written again under the id its first write got: the one record, not two.
        pytest.param(lose_commit_after, id="commit-landed-answer-lost"),
    ],
)
def test_a_record_whose_write_lost_its_connection_is_kept_once(rec, pg_db, monkeypatch, lose):
    token = rec.token()
    random = rec.random(token, NAME)
    lost = lose(monkeypatch, audit, "insert", "record")
    counted = _ok_counted()
    assert rec.fetch(token, NAME, random).content == WAV
    # The record is written after the last byte left, off the loop; counted once it is.
    wait_until(lambda: _ok_counted() == counted + 1, "the download counted")
    assert lost == ["record"]
    assert _records(pg_db) == [("recording", "ok", 1, len(WAV))]
