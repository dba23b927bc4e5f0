"""Seeding: the sample CDRs of :mod:`cdrgate.seed`, made and stored by the database itself
(``storage/seeded.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from cdrgate.seed import SeedPlan, Slot, slots
from cdrgate.storage import cdrs, journal, pg_seed_months, seeded_pipeline, visible
from cdrgate.storage.cdrs import bulk_load
from cdrgate.storage.db import Database
from cdrgate.storage.seeded import Stage

Progress = Callable[[int], None]  # called with the number of rows just stored
# Rows per INSERT ... SELECT (whole hours, so a chunk may be a little larger): the grain of
# the progress bar.
SEED_BATCH = 50_000
SEED_COMMIT_ROWS = 250_000


def seed_database(db: Database, plan: SeedPlan, progress: Progress | None = None) -> int:
    """Insert ``plan.count`` generated CDRs; returns how many were new.

    Into an empty store the whole plan is one transaction. On SQLite its rows are made on
    both cores while they are stored (``seeded_pipeline``), through a rollback journal when
    no other connection has the store open (``journal.rollback_journal``), and the secondary
    indexes are built after the rows (``bulk_load``). From the fifth round they were kept up
    to date as rows went in (the storing core waited for rows anyway); the covering extension
    indexes (migration 0017) made that 7.1 -> 10.1-10.7 s a 1M seed, built after the rows
    8.3 s, its CPU main's (bench/RESULTS.md, twenty-seventh round). On PostgreSQL the months
    new to the store are loaded apart and attached when the transaction ends (``Stage``, storage/pg_months.py): into an
    empty store the plan is one transaction there too, so that every month is loaded whole
    (readers never wait on PostgreSQL: they see the store as it was until the commit), and
    when none of its months has a partition yet, the months are made on two connections at
    once (storage/pg_seed_months.py).
    Otherwise rows are committed every ``SEED_COMMIT_ROWS``: far fewer commits (and WAL
    checkpoints) than one per chunk, yet a server on the same database is never locked out
    for long. On PostgreSQL the months written are vacuumed after the commit
    (``visible.vacuumed_after``): the day reads are index-only at once.
    """
    hours = slots(plan)
    if db.is_sqlite and cdrs.store_is_empty(db):
        with journal.rollback_journal(db), db.write() as conn:
            if cdrs.is_empty(conn):  # still, now that this transaction holds the lock
                chunks = _pipeline_chunks(hours, plan.count)
                with bulk_load(conn):
                    return seeded_pipeline.store_empty(conn, plan, chunks, progress)
    with visible.vacuumed_after(db):
        return _seed_committing(db, plan, hours, progress)


def _seed_committing(
    db: Database, plan: SeedPlan, hours: Sequence[Slot], progress: Progress | None
) -> int:
    """``seed_database`` everywhere but into an empty SQLite store."""
    # Asked in a read of its own: a read of cdr in the seed's transaction would hold a lock on
    # cdr_default until the commit, and the month partitions another connection makes
    # meanwhile would wait out their lock timeout.
    empty_pg = not db.is_sqlite and cdrs.store_is_empty(db)
    if empty_pg and hours and pg_seed_months.months_are_new(db, hours):
        return pg_seed_months.store(db, plan, hours, progress)
    chunks = list(_chunks(hours, SEED_BATCH))
    inserted = done = 0
    while done < len(chunks):
        with db.write() as conn, bulk_load(conn) as whole:
            # Into an empty store, everything in one transaction (see ``bulk_load`` and above).
            whole = whole or empty_pg
            end = _transaction_end(chunks, done, whole)
            # Only this transaction's hours: their months are the ones it may load apart.
            stage = Stage(conn, plan, [hour for chunk in chunks[done:end] for hour in chunk])
            for chunk in chunks[done:end]:
                inserted += stage.insert(chunk)
                if progress is not None:
                    progress(sum(hour.calls for hour in chunk))
            done = end
            inserted -= stage.close()
    return inserted


def _transaction_end(chunks: Sequence[list[Slot]], done: int, whole: bool) -> int:
    """Where the transaction storing ``chunks`` from ``done`` on stops: after
    ``SEED_COMMIT_ROWS`` rows, or at the end when ``whole``."""
    end, rows = done, 0
    while end < len(chunks) and (whole or rows < SEED_COMMIT_ROWS):
        rows += sum(hour.calls for hour in chunks[end])
        end += 1
    return end


# Where the chunks of a seed made by the makers end, in 32nds of its rows: the writer waits
# for the first chunk and a maker has nothing left to do while the writer stores the last,
# so those two are small. (With two makers, (1, 3, 8, 14, 20, 26, 30, 32) and (1, 3, 8, 13,
# 18, 23, 28, 32) were within the machine's noise of these: thirty-second round.)
_PIPELINE_ENDS = (1, 6, 11, 16, 21, 26, 31, 32)


def _pipeline_chunks(hours: Sequence[Slot], count: int) -> list[list[Slot]]:
    """At most ``seeded_pipeline.MOST_CHUNKS`` chunks of consecutive hours."""
    assert len(_PIPELINE_ENDS) == seeded_pipeline.MOST_CHUNKS
    if count < SEED_BATCH * len(_PIPELINE_ENDS):
        return list(_chunks(hours, SEED_BATCH))
    chunks: list[list[Slot]] = [[]]
    ends = iter(_PIPELINE_ENDS)
    end = next(ends)
    stored = 0
    for hour in hours:
        if stored >= count * end // 32:
            chunks.append([])
            end = next(ends)
        chunks[-1].append(hour)
        stored += hour.calls
    return chunks


def _chunks(hours: Sequence[Slot], rows: int) -> Iterator[list[Slot]]:
    """Consecutive hours holding about ``rows`` rows each."""
    chunk: list[Slot] = []
    size = 0
    for hour in hours:
        chunk.append(hour)
        size += hour.calls
        if size >= rows:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk
