"""A recording download on PostgreSQL whose random's spend committed and lost its COMMIT's
answer: the client hears 30003, the attempt is audited once, and the file it opened to send
is closed at once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from cdrgate import recfolder
from cdrgate.errors import Errno
from cdrgate.storage import recordings
from cdrgate.storage.db import Database
from cdrgate.storage.tables import download_audit, recording_random
from tests.counted import downloads_counted
from tests.postgres.lost_commit import lose_commit_after
from tests.recordings.conftest import WAV, RecordingFlow, app_with_one_recording

NAME = "20260528100000-1000-0215550100.wav"


@pytest.fixture
def rec(pg_db: Database, clock, tmp_path) -> Iterator[RecordingFlow]:
    app = app_with_one_recording(pg_db, clock, tmp_path / "recordings", NAME)
    with TestClient(app, base_url="http://pbx.test:8088", client=("127.0.0.1", 50000)) as http:
        yield RecordingFlow(http)


def _opened_files(monkeypatch) -> list[Any]:
    """Every stream the recordings folder opens from now on."""
    streams: list[Any] = []
    real_open = recfolder.RecordingFolder.open

    def open_(self, name):
        opened = real_open(self, name)
        if opened is not None:
            streams.append(opened.stream)
        return opened

    monkeypatch.setattr(recfolder.RecordingFolder, "open", open_)
    return streams


def test_a_spend_whose_commit_answer_was_lost_is_audited_once_and_closes_its_file(
    rec, pg_db, monkeypatch
):
    token = rec.token()
    random = rec.random(token, NAME)
    streams = _opened_files(monkeypatch)
    lost = lose_commit_after(monkeypatch, recordings, "redeem_random", "redeem")
    counted = downloads_counted("recording", "failed")
    answer = rec.fetch(token, NAME, random).json()
    assert answer == {"status": "Failed", "errno": Errno.APISRV_DOWN.value}
    assert lost == ["redeem"]
    with pg_db.read() as conn:
        assert conn.execute(select(recording_random.c.used_ms)).scalar_one() is not None
        records = conn.execute(
            select(download_audit.c.kind, download_audit.c.outcome, download_audit.c.errno)
        ).all()
    assert [tuple(r) for r in records] == [("recording", "failed", Errno.APISRV_DOWN.value)]
    assert downloads_counted("recording", "failed") == counted + 1
    # Was: left open until the garbage collector found it (a ResourceWarning).
    assert len(streams) == 1 and streams[0].closed
    monkeypatch.undo()
    assert rec.download(NAME).content == WAV  # the next, as ever
