"""Write src/cdrgate/migrations/sqlite_head.sql: the schema the migrations make of an empty
SQLite file, which new stores are made with (storage/sqlite_head.py). Run after adding a
migration:

    .venv/bin/python scripts/sqlite_head.py --write

Without ``--write`` it prints the snapshot instead. tests/storage/test_sqlite_head.py fails
while the file differs from what this writes.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from contextlib import closing
from pathlib import Path

from cdrgate.storage import schema, sqlite_head
from cdrgate.storage.db import Database


def migrated_snapshot() -> str:
    """The snapshot of a store made by running every migration on an empty file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "migrated.db"
        db = Database(f"sqlite:///{path}")
        try:
            schema.migrate(db)
        finally:
            db.dispose()
        with closing(sqlite3.connect(path)) as raw:
            return sqlite_head.dump(raw)


def main() -> None:
    text = migrated_snapshot()
    if "--write" in sys.argv[1:]:
        sqlite_head.SNAPSHOT.write_text(text, encoding="utf-8")
        print(f"wrote {sqlite_head.SNAPSHOT}")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
