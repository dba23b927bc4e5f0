"""The demo's generated recordings: real WAV files, named by seeded calls, served as such."""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import select

from cdrgate.ingest.seeding import seed_database
from cdrgate.recdemo import write_demo_recordings
from cdrgate.seed import SeedPlan
from cdrgate.storage.tables import cdr
from tests.recordings.conftest import RecordingFlow

ROOT = Path(__file__).resolve().parents[2]
DAY = "2026-03-02"  # the day scripts/demo.sh makes recordings for


def test_demo_recordings_are_wav_tones_for_seeded_calls(db, tmp_path, make_client, api_account):
    seed_database(db, SeedPlan(count=400, seed=7, start="2026-03-02 00:00:00", days=1))
    paths = write_demo_recordings(db, tmp_path, "2026-03-02", count=3)
    assert len(paths) == 3
    assert all(path.parent == tmp_path / "2026" / "03" / "02" for path in paths)
    with wave.open(str(paths[0])) as audio:
        assert (audio.getnchannels(), audio.getframerate(), audio.getsampwidth()) == (1, 8000, 2)
        assert audio.getnframes() == 16000
    flow = RecordingFlow(make_client(recordings=str(tmp_path)))
    name = paths[1].name  # seeded names may hold "+" (callers like +4179...): encode it
    token = flow.token()
    response = flow.fetch(token, quote(name, safe=""), flow.random(token, name))
    assert response.content == paths[1].read_bytes()


def test_make_demo_gives_every_call_of_its_day_a_recording(db, tmp_path):
    # The README's curl flow lists the day's calls of 1000 and 1001, the console plays any
    # call: each recording a CDR of that day names must be there, not only the first few.
    seed_database(db, SeedPlan(count=400, seed=7, start="2026-03-02 00:00:00", days=1))
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo_recordings.py"), str(tmp_path), DAY],
        env={**os.environ, "CDRGATE_DATABASE": db.url}, capture_output=True, text=True,
        check=True, timeout=120,
    )  # fmt: skip
    with db.read() as conn:
        named = set(
            conn.execute(select(cdr.c.recording).where(cdr.c.recording.like("20260302%")))
            .scalars()
        )  # fmt: skip
    assert len(named) > 5
    assert set(done.stdout.split()) == named
    assert {path.name for path in (tmp_path / "2026" / "03" / "02").iterdir()} == named
