"""Seeding an empty SQLite store on two cores: rows made on one while the other stores them.

One statement runs on one core, and making the rows (``seeded``'s SELECT) costs about as
much CPU as storing them. So, inside the seed's one write transaction, a helper thread
makes chunk k+1 on a private in-memory connection while the writer stores chunk k (into the
table and its uniqueness key: the caller's ``bulk_load`` builds the other indexes after the
last chunk); Python's sqlite3 lets go of the GIL while a statement runs, so both run at once.

A chunk travels as a scratch file: its rows in time order, and beside them their
cdr_summary counts (also made on the helper's core). The writer attaches the file and copies
the rows with one INSERT ... SELECT. Each chunk is a new file, because an attached file read
in a transaction stays attached and locked until that transaction ends (and the writer's
snapshot of it would not see later chunks). SQLite allows 10 attached databases, so a seed
is cut into at most ``MOST_CHUNKS`` chunks. The files hold nothing the store needs: they are
written without a journal or syncs, removed once copied (at most two exist at once), and a
crash leaves the store's transaction to roll back as any other (and its scratch folder to the
next command that makes one: ``cdrgate.scratch``).
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy import Connection, create_engine, text

from cdrgate.scratch import scratch_folder
from cdrgate.seed import SeedPlan, Slot
from cdrgate.storage import summary
from cdrgate.storage.attached import detach_on_checkin
from cdrgate.storage.cdrs import COLUMNS
from cdrgate.storage.seeded import bind_params, rows_sql, stage_hours

MOST_CHUNKS = 8
_SCHEMA = "seed_chunk"  # the writer attaches chunk i as seed_chunk<i>

Made = tuple[Path, int] | BaseException  # a chunk's file and rows, or why the helper stopped


def store_empty(
    conn: Connection,
    plan: SeedPlan,
    chunks: Sequence[Sequence[Slot]],
    progress: Callable[[int], None] | None = None,
) -> int:
    """Store the rows of ``chunks`` (consecutive hours, at most ``MOST_CHUNKS``) on ``conn``,
    a SQLite write transaction on an empty ``cdr``; returns how many were new."""
    assert len(chunks) <= MOST_CHUNKS
    detach_on_checkin(conn.engine)
    with scratch_folder("seed") as folder:
        return _store(conn, plan, chunks, folder, progress)


def _store(
    conn: Connection,
    plan: SeedPlan,
    chunks: Sequence[Sequence[Slot]],
    folder: Path,
    progress: Callable[[int], None] | None,
) -> int:
    made: queue.Queue[Made] = queue.Queue()
    stop = threading.Event()
    # Chunk files on disk at once: the one being stored and the one being made (the helper
    # is the faster side and would otherwise fill the disk ahead of the writer).
    room = threading.Semaphore(2)
    helper = threading.Thread(
        target=_make_chunks, args=(plan, chunks, folder, made, stop, room), name="cdrgate-seed"
    )
    helper.start()
    names = ", ".join(COLUMNS)
    inserted = 0
    try:
        for i in range(len(chunks)):
            item = made.get()
            if isinstance(item, BaseException):
                raise item
            path, size = item
            schema = f"{_SCHEMA}{i}"
            conn.execute(text(f"ATTACH :path AS {schema}"), {"path": str(path)})
            after = summary.newest_id(conn)
            result = conn.exec_driver_sql(
                # "WHERE true": SQLite would read ON CONFLICT as a join's ON without it.
                f"INSERT INTO cdr ({names}) SELECT {names} FROM {schema}.rows WHERE true "
                "ON CONFLICT DO NOTHING"
            )
            new = max(int(result.rowcount), 0)
            if new == size:
                summary.add_counted(conn, f"{schema}.counts")
            else:  # some were stored already: count only those this transaction added
                summary.add_stored(conn, after)
            inserted += new
            with contextlib.suppress(OSError):  # removed at the end anyway
                os.remove(path)
            room.release()
            if progress is not None:
                progress(size)
    finally:
        stop.set()
        room.release()  # a helper waiting for room wakes up, sees stop and ends
        helper.join()
    return inserted


def _make_chunks(
    plan: SeedPlan,
    chunks: Sequence[Sequence[Slot]],
    folder: Path,
    made: queue.Queue[Made],
    stop: threading.Event,
    room: threading.Semaphore,
) -> None:
    """The helper thread: each chunk's file, in order, until done or told to stop."""
    engine = create_engine("sqlite://", isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            stage_hours(conn, [hour for chunk in chunks for hour in chunk])
            names = ", ".join(COLUMNS)
            make = text(
                f"CREATE TABLE out.rows AS SELECT {names} "
                f"FROM ({rows_sql('sqlite', plan)}) AS seeded"
            )
            for i, chunk in enumerate(chunks):
                room.acquire()
                if stop.is_set():
                    return
                path = folder / f"chunk{i}.db"
                conn.execute(text("ATTACH :path AS out"), {"path": str(path)})
                conn.exec_driver_sql("PRAGMA out.journal_mode = OFF")
                conn.exec_driver_sql("PRAGMA out.synchronous = OFF")
                conn.execute(make, bind_params(plan, chunk[0].first_seq, chunk[-1].first_seq))
                summary.count_into(conn, "out.rows", "out.counts")
                conn.exec_driver_sql("DETACH out")
                made.put((path, sum(hour.calls for hour in chunk)))
    except BaseException as exc:  # the writer waits on the queue: it must hear of it
        made.put(exc)
    finally:
        engine.dispose()
