"""A new SQLite store made at the newest schema in one transaction, from a snapshot of it.

Running every migration on a new store took ~0.35-0.4 s: importing Alembic (and SQLAlchemy,
~0.3 s of it) and running seventeen migrations that each start from the last one's schema;
and the connection they ran on made the command's own work slower after them (a 1M seed
11.4-11.6 s against 8.6-8.9 s; bench/RESULTS.md, thirty-first round).
A new store has no rows to carry through them, so it is made, as Rails loads ``schema.rb``
into a new database, by running the statements the migrations end with: the snapshot
``migrations/sqlite_head.sql``, with ``alembic_version`` at ``revision.HEAD``. A store that
exists is still upgraded by the migrations (``storage/schema.py``).

The snapshot is written by ``scripts/sqlite_head.py --write`` from a store the migrations
made, and tests/storage/test_sqlite_head.py fails while it differs from what they make. A
snapshot left behind by a new migration is still safe: it names its own revision, so a store
made from it is upgraded from there by the migrations, only more slowly.

This module imports no SQLAlchemy: an import into a new store makes it before its first row
(``ingest/first_load.py``), without loading SQLAlchemy at all.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

from cdrgate.storage.sqlite_settings import SQLITE_BUSY_TIMEOUT_S

SNAPSHOT = Path(__file__).resolve().parent.parent / "migrations" / "sqlite_head.sql"
# Larger pages for a new SQLite store: a 1M-row import builds its indexes in fewer, larger
# pages, and the small flows, the full and the selective export measured no worse
# (bench/RESULTS.md, "Issue 17, import (ninth round)"). Existing stores keep theirs.
NEW_STORE_PAGE_SIZE = 16384
# A store, and a backup of one, holds call records (personal data), password hashes and the
# key that signs randoms: readable by its owner only, whatever the umask. SQLite gives the
# -wal and -shm files the mode of the database file.
PRIVATE_FILE_MODE = 0o600


def statements(text: str | None = None) -> list[str]:
    """The snapshot's statements (``text``, or the file's), in order, comments left out."""
    if text is None:
        text = SNAPSHOT.read_text(encoding="utf-8")
    found: list[str] = []
    pending = ""
    for line in text.splitlines(keepends=True):
        if not pending and (not line.strip() or line.startswith("--")):
            continue
        pending += line
        # A statement ends at its semicolon, even one whose text holds a semicolon or a
        # line break inside a string or a trigger's body: SQLite's own reading says where.
        if sqlite3.complete_statement(pending):
            found.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"{SNAPSHOT.name} ends inside a statement: {pending.strip()[:60]!r}")
    return found


def create(path: Path) -> bool:
    """Make the store file ``path``: its page size, WAL mode, and the newest schema, in one
    transaction; returns whether this call made it. SQLite fixes the page size when it writes
    the file's first page, which setting WAL mode does, so it is set before anything else.
    The file is claimed first (created exclusively, empty, owner-only: ``PRIVATE_FILE_MODE``):
    of two processes making the same store at once, the other finds it there and leaves it to
    the usual path. An SQLite error (a full disk) is raised and leaves a file with no table,
    which the next command fills as any empty file (``schema.upgrade``)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
    except FileExistsError:
        return False
    with closing(sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S, isolation_level=None)) as raw:
        raw.execute(f"PRAGMA page_size = {NEW_STORE_PAGE_SIZE}")
        raw.execute("PRAGMA journal_mode = WAL")
        return apply(raw)


def apply(raw: sqlite3.Connection) -> bool:
    """The snapshot's schema into the store that ``raw`` (autocommit) is connected to, in one
    transaction, if it has no table (or other schema object) yet; returns whether it did.
    Checked under the write lock: of two processes making the same store at once, one makes
    it and the other finds it made (and leaves it to the migrations, which find it current)."""
    raw.execute("BEGIN IMMEDIATE")
    try:
        if raw.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is not None:
            raw.execute("ROLLBACK")
            return False
        for statement in statements():
            raw.execute(statement)
    except BaseException:
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        raise
    raw.execute("COMMIT")
    return True


def dump(raw: sqlite3.Connection) -> str:
    """The snapshot of the store ``raw`` is connected to (one a new store's migrations made):
    its tables, then their indexes, views and triggers, each in the order it was made, and
    its ``alembic_version`` row. SQLite's own objects (``sqlite_*``) are made by the tables
    that need them."""
    kinds = ("table", "index", "view", "trigger")
    rows = raw.execute(
        "SELECT type, sql FROM sqlite_master "
        "WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid"
    ).fetchall()
    ordered = sorted(rows, key=lambda row: kinds.index(row[0]))  # stable: made order within
    (revision,) = raw.execute("SELECT version_num FROM alembic_version").fetchone()
    lines = [
        "-- The schema a new SQLite store is made with (storage/sqlite_head.py): what the",
        "-- migrations make of an empty file. Written by scripts/sqlite_head.py --write; do not",
        "-- edit by hand.",
        "",
        *(f"{sql};\n" for _, sql in ordered),
        f"INSERT INTO alembic_version (version_num) VALUES ('{revision}');",
    ]
    return "\n".join(lines) + "\n"
