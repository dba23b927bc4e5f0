"""Short generated WAV files for seeded calls that name a recording (``make demo``).

Tones made with the stdlib ``wave`` module: 8 kHz, 16-bit mono, like a PBX's call recordings,
a couple of seconds each, so the repository ships code and no audio.
"""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

from sqlalchemy import select

from cdrgate.storage.db import Database
from cdrgate.storage.tables import cdr

RATE = 8000
SECONDS = 2.0


def write_tone(path: Path, frequency: float, seconds: float = SECONDS) -> None:
    frames = int(RATE * seconds)
    samples = (
        int(8000 * math.sin(2 * math.pi * frequency * i / RATE) * min(1.0, (frames - i) / 400))
        for i in range(frames)
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(b"".join(struct.pack("<h", sample) for sample in samples))


def write_demo_recordings(
    db: Database, folder: Path, day: str, count: int | None = None
) -> list[Path]:
    """A tone for each of the first ``count`` (default: every) calls of ``day`` (yyyy-mm-dd)
    with a recording, in the dated sub-folder a PBX would use (DIR/yyyy/mm/dd/NAME)."""
    with db.read() as conn:
        names = list(
            conn.execute(
                select(cdr.c.recording)
                .where(cdr.c.recording.like(day.replace("-", "") + "%"))
                .order_by(cdr.c.recording)
                .limit(count)
            ).scalars()
        )
    target = folder.joinpath(*day.split("-"))
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for number, name in enumerate(names):
        path = target / name
        if not path.exists():
            # One octave of semitones, over and over: 8 kHz audio carries nothing past 4 kHz.
            write_tone(path, 440.0 * 2 ** ((number % 12) / 12))
        written.append(path)
    return written
