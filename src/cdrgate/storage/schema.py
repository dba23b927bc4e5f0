"""Schema creation and upgrades through Alembic, run in-process on a live connection.

Alembic is imported only when a store is not at ``HEAD`` already: importing it costs about
0.12 s, and every command opens a store, nearly always one that is current (one query says so).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text

from cdrgate.errors import SchemaError
from cdrgate.storage import sqlite_head
from cdrgate.storage.db import Database
from cdrgate.storage.revision import HEAD as HEAD  # its home is revision.py

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
MIGRATION_LOCK_KEY = 0x63647267  # pg_advisory_xact_lock key ("cdrg")


def _config(conn: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if conn is not None:
        config.attributes["connection"] = conn
    return config


def head_revision() -> str:
    return HEAD


def script_head() -> str:
    """The head revision as Alembic reads it from the migration scripts."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(db: Database) -> str | None:
    return stored_revision(db)


def check(db: Database) -> str | None:
    """The database's revision; SchemaError if it is newer than (unknown to) this code."""
    current = stored_revision(db)
    if current is None or current == HEAD:
        return current
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_config())
    known = {rev.revision for rev in script.walk_revisions()}
    if current not in known:
        raise SchemaError(
            f"the database schema ({current}) is newer than this cdrgate "
            f"(knows up to {HEAD}): upgrade cdrgate"
        )
    return current


def stored_revision(db: Database) -> str | None:
    """The database's revision, read with one query: cheap enough for a readiness probe, and
    without the log lines Alembic writes for each migration context it configures."""
    with db.read() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        value = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return str(value) if value is not None else None


def holds_other_tables(db: Database) -> bool:
    """Whether a SQLite file with no cdrgate schema holds another program's tables (an empty
    one is a store not made yet). A PostgreSQL database is shared with other schemas' and
    applications' tables by design: never."""
    if not db.is_sqlite:
        return False
    with db.read() as conn:
        return conn.execute(text("SELECT 1 FROM sqlite_master LIMIT 1")).first() is not None


def not_a_store(db: Database) -> SchemaError:
    return SchemaError(
        f"{db.engine.url} is not a cdrgate database (it holds tables but no cdrgate schema): "
        "name another file, or a new one"
    )


def upgrade(db: Database) -> str:
    """Bring the schema to the newest revision; returns it. Safe to run repeatedly. A SQLite
    store with no table yet is made from the snapshot of the newest schema
    (``sqlite_head``), any other by the migrations."""
    current = check(db)
    if current == HEAD:
        return HEAD
    if current is None and db.is_sqlite:
        _apply_snapshot(db)
        # Made here or by another process meanwhile; a stale snapshot leaves the rest to the
        # migrations. Still no revision: the file held tables before, and they are not ours.
        current = check(db)
        if current is None:
            raise not_a_store(db)
        if current == HEAD:
            return HEAD
    migrate(db)
    return HEAD


def _apply_snapshot(db: Database) -> None:
    """``sqlite_head.apply`` on the store's own connection: the newest schema, if the store
    has no table yet."""
    with db.connect() as conn:
        raw = conn.connection.driver_connection
        # The store's connections leave transactions to us (db.py: isolation_level None), so
        # apply's own BEGIN IMMEDIATE and COMMIT are the transaction.
        assert isinstance(raw, sqlite3.Connection) and raw.isolation_level is None
        sqlite_head.apply(raw)


def migrate(db: Database) -> None:
    """Run the migrations from the store's revision to the newest (none: every one)."""
    from alembic import command

    with db.connect() as conn:
        if db.is_sqlite:
            # Every migration in one transaction under the write lock, as on PostgreSQL (SQLite's
            # DDL is transactional too): Alembic, which assumes it is not, would otherwise commit
            # after each migration, and of two processes upgrading together the second, which
            # read the revision before the first's next migration, ran it again and failed
            # ("no such index"). Begun here, Alembic reads the revision inside it and commits
            # nothing itself; the other upgrader waits for it (the busy timeout), then finds
            # nothing to do, and a migration that fails (or a kill) leaves the old revision.
            conn.execution_options(cdrgate_write=True)
            conn.begin()
        else:
            # Workers or hosts starting together: one migrates, the others wait for it (the
            # lock ends with the transaction) and then find nothing left to do.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        command.upgrade(_config(conn), "head")
        conn.commit()
    if db.is_sqlite:
        # The connection the migrations ran on, reused, made SQLite's own work slower: a 1M
        # seed right after every migration from an empty file took 11.7 s against 8.8-9.3 s
        # with it closed (after 0017 alone, no slower; bench/RESULTS.md, thirty-first round;
        # the cause is not known). New connections open as needed.
        db.engine.dispose()


def is_current(db: Database) -> bool:
    return check(db) == HEAD
