"""The server's retention schedule removes recording files too: those past their own age
limit and those whose last CDR the CDR limits removed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cdrgate.services.retention_schedule import has_work, prune_alone
from cdrgate.settings import Settings
from tests.services.test_retention import NOW, callids, days_ago


def recorded(folder: Path, cdr, name: str):
    (folder / name).write_bytes(b"RIFF" + b"\x00" * 40)
    return cdr._replace(recording=name)


@pytest.fixture
def folder(add_cdrs, tmp_path) -> Path:
    """old.wav, named by a CDR of 3 days ago, and new.wav, by one of today."""
    root = tmp_path / "recordings"
    root.mkdir()
    add_cdrs(recorded(root, days_ago(3, 1), "old.wav"), recorded(root, days_ago(0, 1), "new.wav"))
    return root


def test_files_past_their_age_go_and_their_cdrs_stay(db, folder):
    settings = Settings(database=db.url, recordings=str(folder), recordings_max_age_days=1)

    reports = prune_alone(db, settings, NOW)
    assert reports is not None
    cdrs, files = reports
    assert cdrs is None and files.files == ["old.wav"]
    assert sorted(p.name for p in folder.iterdir()) == ["new.wav"]
    assert len(callids(db)) == 2


def test_a_file_goes_with_the_last_cdr_the_limits_remove(db, folder):
    settings = Settings(database=db.url, recordings=str(folder), retention_max_records=1)

    reports = prune_alone(db, settings, NOW)
    assert reports is not None and reports[1].files == ["old.wav"]
    assert sorted(p.name for p in folder.iterdir()) == ["new.wav"]


def test_a_recordings_age_alone_gives_the_schedule_work(tmp_path):
    assert not has_work(Settings(recordings_max_age_days=1))  # no folder served
    assert has_work(Settings(recordings=str(tmp_path), recordings_max_age_days=1))


def test_the_server_removes_old_recordings_on_its_schedule(db, add_cdrs, make_client, tmp_path):
    folder = tmp_path / "recordings"
    folder.mkdir()
    old, new = days_ago(30, 1), days_ago(0, 1)
    add_cdrs(recorded(folder, old, "old.wav"), recorded(folder, new, "new.wav"))
    make_client(recordings=str(folder), recordings_max_age_days=7, retention_interval_seconds=3600)
    for _ in range(1500):  # a bounded wait for the background task (30 s), not a timing test
        if not (folder / "old.wav").exists():
            break
        time.sleep(0.02)
    assert sorted(p.name for p in folder.iterdir()) == ["new.wav"]
