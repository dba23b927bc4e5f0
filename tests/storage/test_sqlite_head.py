"""A new SQLite store is made from the snapshot of the newest schema (storage/sqlite_head.py):
the snapshot is what the migrations make, a store made from it is theirs, and a stale one is
still safe."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cdrgate.cli import app
from cdrgate.cli.exits import EXIT_STORAGE
from cdrgate.services.stores import open_or_create
from cdrgate.storage import schema, sqlite_head
from cdrgate.storage.db import Database
from tests.migrating import migrate

ROOT = Path(__file__).resolve().parents[2]


def _migrated(path: Path, revision: str = "head") -> Path:
    """A store made from an empty file by the migrations alone, up to ``revision``."""
    db = Database(f"sqlite:///{path}")
    try:
        migrate(db, "upgrade", revision)
    finally:
        db.dispose()
    return path


def _objects(path: Path) -> list[tuple[str, str, str, str | None]]:
    with closing(sqlite3.connect(path)) as raw:
        return sorted(raw.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"))


def _revision(path: Path) -> str:
    with closing(sqlite3.connect(path)) as raw:
        return str(raw.execute("SELECT version_num FROM alembic_version").fetchone()[0])


def test_the_snapshot_is_what_the_migrations_make(tmp_path):
    with closing(sqlite3.connect(_migrated(tmp_path / "migrated.db"))) as raw:
        made = sqlite_head.dump(raw)
    assert made == sqlite_head.SNAPSHOT.read_text(encoding="utf-8"), (
        "migrations/sqlite_head.sql is stale: run .venv/bin/python scripts/sqlite_head.py --write"
    )


def test_the_migrations_of_an_empty_file_leave_no_row_a_snapshot_would_miss(tmp_path):
    path = _migrated(tmp_path / "migrated.db")
    with closing(sqlite3.connect(path)) as raw:
        tables = [
            name for (name,) in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        rows = {
            name: raw.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in tables
        }
    assert rows.pop("alembic_version") == 1
    assert rows and set(rows.values()) == {0}


def test_a_new_store_is_the_migrations_store_at_the_newest_revision(tmp_path):
    migrated = _migrated(tmp_path / "migrated.db")
    opened = open_or_create(f"sqlite:///{tmp_path / 'new.db'}")
    opened.db.dispose()
    assert opened.created == str(tmp_path / "new.db")
    assert _objects(tmp_path / "new.db") == _objects(migrated)
    assert _revision(tmp_path / "new.db") == schema.HEAD
    with closing(sqlite3.connect(tmp_path / "new.db")) as raw:
        assert raw.execute("PRAGMA page_size").fetchone()[0] == sqlite_head.NEW_STORE_PAGE_SIZE
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_empty_file_given_to_upgrade_is_made_from_the_snapshot_too(tmp_path):
    # As the tests' own stores are: Database opens (and so makes) the file, upgrade fills it.
    migrated = _migrated(tmp_path / "migrated.db")
    db = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        assert schema.upgrade(db) == schema.HEAD
        assert schema.upgrade(db) == schema.HEAD  # and again: nothing to do
    finally:
        db.dispose()
    assert _objects(tmp_path / "empty.db") == _objects(migrated)


def test_a_new_store_runs_no_migration(tmp_path):
    # What makes it fast: neither Alembic nor a migration is loaded to make it.
    url = f"sqlite:///{tmp_path / 'new.db'}"
    code = (
        "import sys; from cdrgate.services.stores import open_or_create; "
        f"open_or_create({url!r}).db.dispose(); "
        "print(sorted(m for m in sys.modules if m.startswith(('alembic', 'cdrgate.migrations'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert out.strip() == "[]"
    assert _revision(tmp_path / "new.db") == schema.HEAD


def test_a_store_with_a_table_already_is_left_to_the_migrations(tmp_path):
    path = tmp_path / "other.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as raw:
        raw.execute("CREATE TABLE notes (body TEXT)")
        assert sqlite_head.apply(raw) is False
        assert [name for (name,) in raw.execute("SELECT name FROM sqlite_master")] == ["notes"]


def test_a_snapshot_left_behind_by_a_new_migration_is_upgraded_from_its_revision(
    tmp_path, monkeypatch
):
    # A snapshot one migration old, as a new migration without a new snapshot would leave it.
    older = _migrated(tmp_path / "older.db", "0016")
    with closing(sqlite3.connect(older)) as raw:
        stale = tmp_path / "stale.sql"
        stale.write_text(sqlite_head.dump(raw), encoding="utf-8")
    monkeypatch.setattr(sqlite_head, "SNAPSHOT", stale)
    migrated = _migrated(tmp_path / "migrated.db")
    opened = open_or_create(f"sqlite:///{tmp_path / 'new.db'}")
    opened.db.dispose()
    assert _revision(tmp_path / "new.db") == schema.HEAD
    assert _objects(tmp_path / "new.db") == _objects(migrated)


def test_a_statement_cut_short_in_the_snapshot_is_an_error():
    with pytest.raises(ValueError, match="ends inside a statement"):
        sqlite_head.statements("CREATE TABLE a (x);\nCREATE TABLE b (\n  y INTEGER\n")
    text = "-- a comment\n\nCREATE TABLE a (x TEXT DEFAULT ';');\nINSERT INTO a VALUES ('x;\ny');\n"
    assert sqlite_head.statements(text) == [
        "CREATE TABLE a (x TEXT DEFAULT ';');",
        "INSERT INTO a VALUES ('x;\ny');",
    ]


def test_a_store_that_cannot_be_made_is_one_error_and_the_next_try_makes_it(tmp_path, monkeypatch):
    def full_disk(raw: sqlite3.Connection) -> bool:
        raise sqlite3.OperationalError("database or disk is full")

    path = tmp_path / "new.db"
    upgrade = ["db", "upgrade", "--database", f"sqlite:///{path}"]
    with monkeypatch.context() as patched:
        patched.setattr(sqlite_head, "apply", full_disk)
        result = CliRunner().invoke(app, upgrade)
    assert result.exit_code == EXIT_STORAGE
    assert result.output == (
        f"error: database unavailable: cannot create the database {path}: "
        "database or disk is full\n"
    )
    assert CliRunner().invoke(app, upgrade).exit_code == 0
    assert _objects(path) == _objects(_migrated(tmp_path / "migrated.db"))


def test_a_store_in_a_folder_it_cannot_write_is_one_error(tmp_path, monkeypatch):
    # A read-only mount (or, for a user other than root, a folder without write permission):
    # the file's claim fails with EROFS, which was a traceback.
    path = tmp_path / "new.db"
    real_open = os.open

    def read_only_folder(file, flags, *args, **kwargs):
        if Path(file) == path:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(file))
        return real_open(file, flags, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(os, "open", read_only_folder)
        result = CliRunner().invoke(app, ["db", "upgrade", "--database", f"sqlite:///{path}"])
    assert result.exit_code == EXIT_STORAGE, result.exception
    assert result.output == (
        f"error: database unavailable: cannot create the database {path}: "
        f"{os.strerror(errno.EROFS)}\n"
    )
    assert not path.exists()


def test_a_store_file_someone_else_made_first_is_left_to_them(tmp_path):
    path = tmp_path / "new.db"
    path.write_bytes(b"")
    assert sqlite_head.create(path) is False
    assert path.read_bytes() == b""


def test_two_processes_making_one_new_store_at_once_both_succeed(tmp_path):
    cdrgate = [sys.executable, "-m", "cdrgate", "db", "upgrade", "--database"]
    for attempt in range(3):
        path = tmp_path / f"new{attempt}.db"
        runs = [
            subprocess.Popen(
                [*cdrgate, f"sqlite:///{path}"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=ROOT,
            )
            for _ in range(2)
        ]
        outs = [run.communicate(timeout=60) for run in runs]
        assert [run.returncode for run in runs] == [0, 0], outs
        assert _revision(path) == schema.HEAD
        assert _objects(path) == _objects(tmp_path / "new0.db")
