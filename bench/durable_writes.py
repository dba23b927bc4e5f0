"""What a durable commit costs against an ordinary one, per transaction, in the same run.

    .venv/bin/python bench/durable_writes.py [--database URL] [--count 300] [--repeat 3]

``Database.write(durable=True)`` is the commit of data acknowledged to a sender that then
forgets it: a push's events and, since the thirty-fifth round, each batch of ``import
--follow``. On SQLite it commits with ``synchronous=FULL`` (an fsync of the WAL at each
commit) where the store runs ``NORMAL``; on PostgreSQL it asks ``set_config`` once and, on a
server set to ``synchronous_commit = off``, commits with ``local`` (a WAL flush). Each
transaction here is one small upsert into a real table (``follow_checkpoint``, what a follow
batch writes beside its rows), ordinary and durable runs interleaved. Default: a new SQLite
store in a temporary folder; ``--database`` names another (a PostgreSQL URL: its schema is
upgraded, and one ``follow_checkpoint`` row named ``bench-durable`` is written and removed).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import benchlib as b
from sqlalchemy import delete

from cdrgate.storage import checkpoints, schema
from cdrgate.storage.checkpoints import Checkpoint
from cdrgate.storage.db import Database
from cdrgate.storage.tables import follow_checkpoint

SOURCE = "bench-durable"


def per_commit(db: Database, durable: bool, count: int) -> float:
    """Microseconds a transaction, over ``count`` of them."""
    started = time.perf_counter()
    for n in range(count):
        with db.write(durable=durable) as conn:
            checkpoints.save(conn, SOURCE, Checkpoint(1, 2, n, n), n)
    return (time.perf_counter() - started) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", help="a store's URL (default: a new SQLite file)")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.database or f"sqlite:///{Path(folder) / 'durable.db'}"
        db = Database(url)
        try:
            schema.upgrade(db)
            b.say(f"{b.machine()}; {db.dialect}; {args.count} transactions a run")
            if not db.is_sqlite:
                with db.read() as conn:
                    server = conn.exec_driver_sql("SHOW synchronous_commit").scalar()
                b.say(f"server synchronous_commit = {server}")
            plain: list[float] = []
            durable: list[float] = []
            per_commit(db, False, args.count // 10 or 1)  # warm the pool and the caches
            for _ in range(args.repeat):
                plain.append(per_commit(db, False, args.count))
                durable.append(per_commit(db, True, args.count))
            for name, values in (("ordinary", plain), ("durable", durable)):
                shown = " / ".join(f"{v:.0f}" for v in values)
                b.say(f"{name:9} {shown} us a commit (median {statistics.median(values):.0f})")
            ratio = statistics.median(durable) / statistics.median(plain)
            b.say(f"durable / ordinary: {ratio:.2f}x")
            with db.write() as conn:
                conn.execute(delete(follow_checkpoint).where(follow_checkpoint.c.source == SOURCE))
        finally:
            db.dispose()


if __name__ == "__main__":
    main()
