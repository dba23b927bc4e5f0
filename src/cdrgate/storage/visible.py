"""PostgreSQL: the months a bulk load wrote, vacuumed once it has committed, so that a small
download's day read is an index-only scan from the start.

The extension indexes carry every column the read needs (migration 0017), but PostgreSQL
still reads a row's table page unless the visibility map marks that page all-visible, which
only VACUUM does: right after a seed the covering read was no faster than the plain one
(bench/RESULTS.md, twenty-sixth round). ``VACUUM`` of just the partitions holding the load's
rows (ids above the newest one before it) marks them; autovacuum keeps live ingestion so
later (docs/operations.md). Not ``VACUUM (ANALYZE)``: on a 1M-row store the ANALYZE was
2.7-3.3 s of its ~3.5 (the VACUUM 0.4 s), the index-only plans need only the page counts
VACUUM records, and autovacuum analyses new months as before (twenty-seventh round). VACUUM
cannot run in a transaction: it runs on a connection of its own in autocommit, after the
load's commit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection

from cdrgate.storage import partitions
from cdrgate.storage.db import Database
from cdrgate.storage.tables import CDR_ID_SEQUENCE

_FLUSH_WAIT_S = 2.0
_FLUSH_POLL_S = 0.01


@contextmanager
def vacuumed_after(db: Database) -> Iterator[None]:
    """Around a load that commits inside the block: on PostgreSQL, the partitions it wrote
    are vacuumed when the block ends without an error (nothing on SQLite)."""
    if db.is_sqlite:
        yield
        return
    with db.engine.connect() as conn:
        before = _newest_id(conn)
        conn.rollback()
    yield
    _wait_for_wal_on_disk(db)
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for name in written_since(conn, before):
            conn.exec_driver_sql(f"VACUUM {name}")


def _wait_for_wal_on_disk(db: Database) -> None:
    """Until the WAL written so far is on disk, for at most ``_FLUSH_WAIT_S``. VACUUM marks a
    page all-visible only once its rows' commit records are (before, it may not set their
    hint bits); under ``synchronous_commit = off`` the WAL writer flushes them within
    ``wal_writer_delay`` (200 ms by default), with it on they already are. Past the bound
    the pages not marked are read with a heap fetch until autovacuum comes: correct."""
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        written = conn.exec_driver_sql("SELECT pg_current_wal_insert_lsn()").scalar_one()
        deadline = time.monotonic() + _FLUSH_WAIT_S
        while (
            time.monotonic() < deadline
            and not conn.exec_driver_sql(
                "SELECT pg_current_wal_flush_lsn() >= %(written)s::pg_lsn", {"written": written}
            ).scalar_one()
        ):
            time.sleep(_FLUSH_POLL_S)


def _newest_id(conn: Connection) -> int:
    """The newest id the sequence has handed out (0: none yet); later rows have larger ids."""
    last, called = conn.exec_driver_sql(
        f"SELECT last_value, is_called FROM {CDR_ID_SEQUENCE}"
    ).one()
    return int(last) if called else 0


def written_since(conn: Connection, before: int) -> list[str]:
    """The partitions of ``cdr`` holding a row whose id is above ``before``: one descent of
    each partition's primary key (id, ts)."""
    names = sorted(conn.execute(partitions.names()).scalars())
    return [
        name
        for name in names
        if conn.exec_driver_sql(
            f"SELECT EXISTS (SELECT FROM {name} WHERE id > %(before)s)", {"before": before}
        ).scalar_one()
    ]
