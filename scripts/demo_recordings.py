"""Write short tone WAVs for seeded calls that name a recording: demo_recordings.py DIR DAY."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cdrgate.recdemo import write_demo_recordings
from cdrgate.storage.db import Database


def main() -> None:
    folder, day = Path(sys.argv[1]), sys.argv[2]
    db = Database(os.environ["CDRGATE_DATABASE"])
    try:
        for path in write_demo_recordings(db, folder, day):
            print(path.name)
    finally:
        db.dispose()


if __name__ == "__main__":
    main()
