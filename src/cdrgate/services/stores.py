"""Opening the store for a command: which commands may create it, and which may migrate it.

A mistyped or forgotten ``--database`` must not leave an empty ``./cdrgate.db`` behind (and
then answer "0 records" against it), and a read must never change a schema. So:

- ``open_or_create``: ``serve``, ``import``, ``seed``, ``sync`` and ``db upgrade`` may create a
  store and migrate it; the caller is told where a new one was made.
- ``open_existing(write=True)``: admin commands that write migrate an existing store only.
- ``open_existing(write=False)``: read-only commands refuse a missing or out-of-date schema.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from cdrgate.errors import SchemaError, StorageUnavailable, UsageError
from cdrgate.logsetup import redacted_url
from cdrgate.storage import schema, sqlite_head
from cdrgate.storage.db import Database, normalise_url

SQLITE_URL_HELP = "a SQLite URL is sqlite:///relative/file.db or sqlite:////absolute/file.db"
_CREATORS = "cdrgate db upgrade, import, seed or serve"


@dataclass(frozen=True)
class Opened:
    db: Database
    created: str | None  # where a new store was made; None if it existed


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases and in-memory SQLite).

    ``sqlite://x.db`` (two slashes) reads as a host named x.db and would silently open an
    in-memory database: it is refused with what the URL should look like."""
    try:
        parsed = make_url(normalise_url(url))
    except Exception:  # sqlalchemy raises ArgumentError for junk; Database says it better
        return None
    if parsed.get_backend_name() != "sqlite":
        return None
    if parsed.host or parsed.port or parsed.username:
        raise UsageError(f"not a SQLite URL: {url!r}: {SQLITE_URL_HELP}")
    if not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def open_or_create(url: str) -> Opened:
    """The store at ``url``, created and migrated to the newest schema as needed."""
    path = sqlite_file(url)
    new = path is not None and not path.exists()
    if path is not None and new and not path.parent.is_dir():
        raise UsageError(
            f"cannot create the database {path.absolute()}: "
            f"the directory {path.parent.absolute()} does not exist"
        )
    if path is not None and new and not str(path).startswith("file:"):
        # SQLite reads a "file:" URI itself: a file made from its text would be the wrong one.
        _create_sqlite_store(path)
    db = Database(url)
    with _closed_on_error(db):
        new = new or (path is None and schema.current_revision(db) is None)
        schema.upgrade(db)
    where = str(path.absolute()) if path is not None else _shown(db)
    return Opened(db, where if new else None)


def _create_sqlite_store(path: Path) -> None:
    """``sqlite_head.create``; a store that cannot be made (a full disk, a folder it may not
    write in or on a read-only mount) is one error."""
    try:
        sqlite_head.create(path)
    except sqlite3.Error as exc:
        raise StorageUnavailable(f"cannot create the database {path.absolute()}: {exc}") from None
    except OSError as exc:
        raise StorageUnavailable(
            f"cannot create the database {path.absolute()}: {exc.strerror or exc}"
        ) from None


def open_existing(url: str, *, write: bool) -> Database:
    """The store at ``url`` if it exists; a writer migrates it, a reader needs it current."""
    path = sqlite_file(url)
    if path is not None and not path.is_file():
        # Most often a shell without the CDRGATE_DATABASE export (the default is ./cdrgate.db).
        raise UsageError(
            f"no database at {path.absolute()} (name one with --database or CDRGATE_DATABASE, "
            f"or create it with {_CREATORS})"
        )
    db = Database(url)
    with _closed_on_error(db):
        current = schema.check(db)
        if current is None and schema.holds_other_tables(db):
            raise schema.not_a_store(db)  # as a writer says it (upgrade)
        if current is None:
            raise UsageError(f"no cdrgate schema in {_shown(db)} yet (create it with {_CREATORS})")
        if write:
            schema.upgrade(db)
        elif current != schema.head_revision():
            raise SchemaError(
                f"the database schema ({current}) is older than this cdrgate "
                f"({schema.head_revision()}): run cdrgate db upgrade"
            )
    return db


@contextmanager
def _closed_on_error(db: Database) -> Iterator[None]:
    """A store refused here (no schema, one newer or older than this cdrgate, a failed
    migration) is closed here: the caller never gets it to close, and on PostgreSQL a pooled
    connection left to the garbage collector is a server session held until then."""
    try:
        yield
    except BaseException:
        db.dispose()
        raise


def _shown(db: Database) -> str:
    """The URL without its password (the user part's or the query's)."""
    return redacted_url(db.engine.url.render_as_string(hide_password=False))


def revision(url: str) -> str | None:
    """The schema revision of the store at ``url``; None if there is no store or no schema."""
    path = sqlite_file(url)
    if path is not None and not path.is_file():
        return None
    db = Database(url)
    try:
        return schema.check(db)
    finally:
        db.dispose()
