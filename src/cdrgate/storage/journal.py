"""SQLite's journal mode around a bulk load into an empty store."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cdrgate.storage.db import Database


@contextlib.contextmanager
def rollback_journal(db: Database) -> Iterator[bool]:
    """The SQLite store out of WAL mode for the block, when no other connection has it open
    (yields whether it is); back in WAL mode after. For a bulk load into an empty store
    (``cdrgate seed``, ``cdrgate import`` of a first file).

    In WAL mode every page of the load is written twice: into the WAL during the transaction
    (with a checksum per frame), then copied into the store by the checkpoint after the commit
    (~400 MB for a million rows, a second of a seed's or an import's critical path). With a rollback
    journal, pages past the store's size at the start of the transaction (all of a load into
    an empty store) are written once, into the store itself; the journal holds only the few
    pages that existed before. A crash leaves a hot journal, which the next connection rolls
    back: the store is empty again, as after a crash in WAL mode.

    Leaving WAL mode needs the file to itself: with any other connection open (a server, this
    process's own pool) SQLite refuses at once (busy timeout 0) and the load runs in WAL mode
    as before. A process that opens the store while the load runs waits for its lock.
    """
    # On the driver's connection: SQLAlchemy would begin a transaction first, and SQLite
    # changes the journal mode only outside one.
    with db.connect() as conn:
        raw = conn.connection.driver_connection
        assert isinstance(raw, sqlite3.Connection)
        left = leave_wal(raw)
    try:
        yield left
    finally:
        if left:
            with db.connect() as conn:
                raw = conn.connection.driver_connection
                assert isinstance(raw, sqlite3.Connection)
                back_to_wal(raw)


def leave_wal(raw: sqlite3.Connection) -> bool:
    """``rollback_journal``'s first step on a connection outside any transaction: the store
    out of WAL mode unless another connection has it open; returns whether it is. Also for an
    import that opens the store without SQLAlchemy (``ingest/first_load.py``)."""
    timeout = raw.execute("PRAGMA busy_timeout").fetchone()[0]
    raw.execute("PRAGMA busy_timeout = 0")
    try:
        mode = raw.execute("PRAGMA journal_mode = DELETE").fetchone()[0]
    except sqlite3.OperationalError:  # "database is locked": someone else has it open
        mode = "wal"
    finally:
        raw.execute(f"PRAGMA busy_timeout = {int(timeout)}")
    return bool(mode == "delete")


def back_to_wal(raw: sqlite3.Connection) -> None:
    """``rollback_journal``'s last step: the store in WAL mode again."""
    raw.execute("PRAGMA journal_mode = WAL")
