"""The demo's generated recordings: real WAV files, named by seeded calls, served as such."""

from __future__ import annotations

import wave
from urllib.parse import quote

from cdrgate.ingest.seeding import seed_database
from cdrgate.recdemo import write_demo_recordings
from cdrgate.seed import SeedPlan
from tests.recordings.conftest import RecordingFlow


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
