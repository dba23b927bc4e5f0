"""On PostgreSQL, ids are taken at insert and seen at commit: the change feed (seq = id) holds
its promise only because CDR inserts take turns (storage/pg_bulk.py). Here a transaction that
took low ids stays open while another writer comes along: the second must wait, so a feed
reader can never step past ids that are still to appear."""

from __future__ import annotations

import threading
import time

from sqlalchemy import text

from cdrgate.ingest.store import store_records
from cdrgate.storage import cdrs
from cdrgate.storage import query as store
from cdrgate.storage.db import Database
from tests.conftest import make_cdr

WAIT_S = 10.0


def waiting_for_the_insert_lock(db: Database) -> bool:
    with db.read() as conn:
        waiting = conn.execute(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        ).scalar_one()
    return int(waiting) > 0


def feed(db: Database, after: int) -> tuple[list[int], int]:
    with db.read() as conn:
        rows, _last = store.read_changes(conn, after, 1000)
    ids = [int(row[0]) for row in rows]
    return ids, ids[-1] if ids else after


def test_a_writer_waits_for_an_open_insert_so_the_feed_never_skips_ids(pg_db: Database):
    early = [make_cdr(callid=f"early.{n}") for n in range(3)]
    late = [make_cdr(callid="late")]
    second = threading.Thread(target=store_records, args=(pg_db, late))
    with pg_db.write() as conn:
        cdrs.insert_records(pg_db, conn, early)  # takes the lowest ids, not yet committed
        second.start()
        deadline = time.monotonic() + WAIT_S
        while not waiting_for_the_insert_lock(pg_db):
            assert time.monotonic() < deadline, "the second writer did not queue"
            time.sleep(0.02)
        seen, mark = feed(pg_db, 0)
        assert seen == []  # nothing committed, and no later id got ahead of ours
    second.join(WAIT_S)
    assert not second.is_alive()

    seen, mark = feed(pg_db, mark)
    assert len(seen) == 4 and seen == sorted(seen)


def test_concurrent_writers_and_a_feed_reader_meet_every_row_once(pg_db: Database):
    writers, per_writer = 4, 25

    def write(w: int) -> None:
        for n in range(per_writer):
            store_records(pg_db, [make_cdr(callid=f"{w}.{n}")])

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    seen: list[int] = []
    mark = 0
    while True:
        finished = not any(thread.is_alive() for thread in threads)
        ids, mark = feed(pg_db, mark)
        seen += ids
        if finished:  # this read began after the last commit
            break
    with pg_db.read() as conn:
        stored = sorted(int(i) for i in conn.execute(text("SELECT id FROM cdr")).scalars())
    assert seen == stored and len(seen) == writers * per_writer
