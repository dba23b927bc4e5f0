"""``cdrgate backup`` and ``restore`` for SQLite; PostgreSQL has its own tools (pg_dump).

The backup uses SQLite's online backup API, so it is one consistent snapshot even while
``serve`` keeps writing. A restore replaces the whole database and so refuses to run while
any process has it open: a server would go on using the file it opened (see ``health``).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from contextlib import closing
from pathlib import Path

from cdrgate.errors import CdrgateError, UsageError
from cdrgate.storage.db import parse_url
from cdrgate.storage.sqlite_head import PRIVATE_FILE_MODE

PG_DUMP_HINT = (
    "PostgreSQL is backed up with its own tools, consistent while cdrgate runs: "
    "pg_dump --format=custom --file=cdrgate.dump DBNAME (restore with pg_restore)"
)
# SQLite's WAL index (the -shm file) keeps a read lock on this byte (the "DMS" slot, after
# the eight WAL locks at offset 120) for as long as any connection has the database open.
SHM_DMS_OFFSET = 128
SQLITE_MAGIC = b"SQLite format 3\x00"


class BackupError(CdrgateError):
    """A backup or restore could not be done; the message says why."""


def sqlite_file(url: str) -> Path:
    parsed = parse_url(url)
    if parsed.get_backend_name() == "postgresql":
        raise UsageError(PG_DUMP_HINT)
    if (
        parsed.get_backend_name() != "sqlite"
        or not parsed.database
        or parsed.database == ":memory:"
    ):
        raise UsageError(
            f"backup and restore need a SQLite file database, not {parsed.get_backend_name()}"
        )
    return Path(parsed.database)


def backup(url: str, output: Path) -> int:
    """Copy the live database to ``output`` (which must not exist); returns its size in bytes."""
    source = sqlite_file(url)
    if not source.exists():
        raise BackupError(f"no database at {source}")
    if output.exists():
        raise BackupError(f"{output} exists: choose a new file (a backup never overwrites)")
    partial = output.with_name(output.name + ".partial")
    try:
        # One step: a backup in steps starts again whenever serve writes between two, and a
        # busy server writes every few milliseconds. A Ctrl-C waits for the copy's end.
        _claim_private(partial)
        with closing(_connect(source, readonly=True)) as src, closing(_connect(partial)) as dst:
            src.backup(dst)
        os.replace(partial, output)
    except sqlite3.Error as exc:
        raise BackupError(f"backup failed: {exc}") from None
    finally:
        # However it ended (an error, a Ctrl-C or SIGTERM), no half copy is left beside it.
        partial.unlink(missing_ok=True)
    return output.stat().st_size


def restore(backup_file: Path, url: str) -> str:
    """Replace the database at ``url`` with ``backup_file``; returns its schema revision."""
    target = sqlite_file(url)
    if not backup_file.is_file():
        # A typo in the name, not a bad backup: a usage error (exit 2), as a missing path is.
        raise UsageError(f"{backup_file}: no such file")
    if not _is_sqlite(backup_file):
        raise BackupError(f"{backup_file} is not a SQLite database")
    revision = _revision_of(backup_file)
    if in_use(target):
        raise BackupError(
            f"{target} is in use by another process (a running cdrgate serve?): stop it first"
        )
    if not target.exists():
        _claim_private(target)
    try:
        with closing(_connect(backup_file, readonly=True)) as src, closing(_connect(target)) as dst:
            src.backup(dst)
    except sqlite3.Error as exc:
        raise BackupError(f"restore failed: {exc}") from None
    return revision


def _claim_private(path: Path) -> None:
    """Make ``path`` an empty owner-only file before SQLite opens it: SQLite would create it
    0644 less the umask, readable by every local user. A file left by an interrupted run is
    emptied and made owner-only too."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
    finally:
        os.close(fd)


def in_use(path: Path) -> bool:
    """True if any process has the SQLite database at ``path`` open in WAL mode."""
    shm = path.with_name(path.name + "-shm")
    try:
        fd = os.open(shm, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, SHM_DMS_OFFSET)
    except OSError:
        return True
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, SHM_DMS_OFFSET)
        return False
    finally:
        os.close(fd)


def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError:
        return False


def _revision_of(path: Path) -> str:
    # Read with plain sqlite3: opening it through Database would switch the file to WAL mode.
    try:
        with closing(_connect(path, readonly=True)) as conn:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        row = None
    if row is None:
        raise BackupError(f"{path} holds no cdrgate schema")
    return str(row[0])


def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    return sqlite3.connect(path)
