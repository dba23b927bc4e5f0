"""The first file of ``cdrgate import`` into an empty SQLite store, loaded without SQLAlchemy.

A large Yeastar file into an empty SQLite store is loaded on two cores, its writer in apsw's
SQLite (``apsw_writer.py``), which uses nothing of SQLAlchemy: yet the import spent ~0.45 s of
CPU importing it before its first row, only to open the store, check its schema and see that
``cdr`` is empty (bench/RESULTS.md, seventeenth and eighteenth rounds). So the CLI tries that
file here first, with the store opened by the standard library's ``sqlite3``:

- the store must be a plain ``sqlite:///FILE`` URL naming an existing file, at the newest
  schema revision (``revision.HEAD``), with no row in ``cdr``; a file that does not exist yet
  is made first, from the snapshot of the newest schema (``make_if_new``: as the usual path
  would make it, without Alembic or SQLAlchemy); anything else (``Fallback.STORE``: an older
  or newer schema, rows, another URL form, a file that is no SQLite store) is left untouched
  to the usual path, which opens the store through SQLAlchemy and migrates, refuses or
  imports it as it always did;
- it leaves WAL mode as ``journal.rollback_journal`` does, on a connection closed before apsw
  opens the file (one SQLite library at a time holds the file in this process: closing a
  descriptor drops the process's POSIX locks), and goes back to WAL mode on a new one after;
- a doubt (a bad row, rows stored by someone else meanwhile, a child that failed) leaves
  nothing stored (``Fallback.PYTHON``): the file is then read the Python way, which names the
  line, as after the fast path's doubt anywhere else.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from enum import Enum
from pathlib import Path
from typing import BinaryIO

from cdrgate.errors import StorageUnavailable
from cdrgate.ingest import apsw_writer, parallel, part, yeastar_sql
from cdrgate.ingest.profile import SourceProfile
from cdrgate.ingest.result import ImportResult, Progress, attempt
from cdrgate.storage import journal, sqlite_head
from cdrgate.storage.revision import HEAD
from cdrgate.storage.sqlite_settings import SQLITE_BUSY_TIMEOUT_S

_PLAIN_SQLITE = "sqlite:///"


class Fallback(Enum):
    STORE = "not a current, empty SQLite store: the usual path opens it and decides"
    PYTHON = "the load doubted, nothing stored: the Python path reads the file"


def store_file(url: str, files: Sequence[Path]) -> str | None:
    """The store's file (absolute) when ``files``' first one may be loaded here: a regular
    file large enough for a parallel load, apsw installed, two CPUs, and ``url`` a plain
    ``sqlite:///FILE`` naming an existing file, or none yet in an existing folder
    (``make_if_new`` makes it). A URL with a query, a percent escape, a ``file:`` URI or
    ``:memory:`` is left to SQLAlchemy's reading of it (``stores.sqlite_file``), which for the
    plain form is this one."""
    if not (files and part.APSW and yeastar_sql.AVAILABLE and url.startswith(_PLAIN_SQLITE)):
        return None
    name = url.removeprefix(_PLAIN_SQLITE)
    if not name or "?" in name or "%" in name or name == ":memory:" or name.startswith("file:"):
        return None
    name = os.path.abspath(name)
    if not os.path.isfile(name) and (
        os.path.exists(name) or not os.path.isdir(os.path.dirname(name))
    ):
        return None  # something else by that name, or no folder to make it in: as usual
    if not parallel.large_enough(files[0]):
        return None
    return name


def make_if_new(path: str) -> bool:
    """Make the store ``path`` from the snapshot of the newest schema if no file is there yet
    (``sqlite_head.create``); returns whether this call made it. One that cannot be made is
    left to the usual path, which says why."""
    try:
        return sqlite_head.create(Path(path))
    except (sqlite3.Error, OSError):
        return False


def load(
    path: str, source: str, stream: BinaryIO, profile: SourceProfile, progress: Progress
) -> ImportResult | Fallback:
    """The Yeastar file behind ``stream`` into the store in ``path`` (``store_file``), when it
    is current and empty, in apsw (``apsw_writer.load``); otherwise what is left to do."""
    size = parallel.worth_it(stream)
    left = None if size is None else _leave_wal_if_ready(path)
    if size is None or left is None:
        return Fallback.STORE
    try:
        loaded = attempt(
            source,
            stream,
            progress,
            lambda counted: apsw_writer.load(path, stream, size, profile, None, counted),
        )
    finally:
        if left:
            _back_to_wal(path)
    return Fallback.PYTHON if loaded is None else loaded


def _leave_wal_if_ready(path: str) -> bool | None:
    """None when the store is not current and empty (it is left as it was); else whether it
    left WAL mode (``journal.leave_wal``: not when another connection has it open)."""
    try:
        with closing(_connect(path)) as raw:
            if not _current_and_empty(raw):
                return None
            return journal.leave_wal(raw)
    except sqlite3.Error:  # not a SQLite store, or unreadable: the usual path says so
        return None


def _back_to_wal(path: str) -> None:
    try:
        with closing(_connect(path)) as raw:
            journal.back_to_wal(raw)
    except sqlite3.Error as exc:  # as the pool reports a failed statement
        raise StorageUnavailable(f"{path}: {exc}") from None


def _connect(path: str) -> sqlite3.Connection:
    # Autocommit: SQLite changes the journal mode only outside a transaction.
    return sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S, isolation_level=None)


def _current_and_empty(raw: sqlite3.Connection) -> bool:
    try:
        revision = raw.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.OperationalError:  # no schema yet: the usual path creates it
        return False
    if revision != [(HEAD,)]:
        return False
    return raw.execute("SELECT 1 FROM cdr LIMIT 1").fetchone() is None
