"""A write transaction whose commit has reached the disk when the block ends.

The store runs SQLite with ``synchronous=NORMAL``: a commit survives a crash of cdrgate but
not a power cut. Pushed events are acknowledged to a sender that then forgets them, so
their commit is made with ``synchronous=FULL`` (the WAL is fsynced before the commit
returns). PostgreSQL commits are durable by default.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection

from cdrgate.storage.db import Database, _translate_errors


@contextmanager
def durable_write(db: Database) -> Iterator[Connection]:
    if not db.is_sqlite:
        with db.write() as conn:
            yield conn
        return
    with _translate_errors(), db.engine.connect() as conn:
        # SQLite refuses to change the level inside a transaction: set it on the raw
        # (autocommit) connection before BEGIN, and restore it before the pool gets it back.
        raw = conn.connection.driver_connection
        assert raw is not None
        previous = int(raw.execute("PRAGMA synchronous").fetchone()[0])
        raw.execute("PRAGMA synchronous=FULL")
        try:
            conn.execution_options(cdrgate_write=True)
            with conn.begin():
                yield conn
        finally:
            raw.execute(f"PRAGMA synchronous={previous}")
