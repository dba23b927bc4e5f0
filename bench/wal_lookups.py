"""What the frames in a SQLite WAL cost a small download's day read (twenty-seventh round).

    .venv/bin/python bench/wal_lookups.py [--store bench/data/seed-1000000-1.db] [--rounds 3]

A copy of the store (16 KiB pages when ``cdrgate seed`` made it), read as the server reads it
(64 MiB cache, 1 GiB memory map), while a writer on another connection fills the WAL with
small commits (8 rows of a scratch table and its index, about a group commit's pages) and
nothing checkpoints: every page the read takes is then looked up in the WAL's index first.
Prints the read's CPU (process time, one extension's day, ~67 rows at 1M) by the frames in
the WAL, min and median of the rounds. No server: bounded by the frame counts below.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

DAY_READ = (
    "SELECT cdr.line FROM cdr WHERE cdr.callfrom IN (?) AND cdr.ts BETWEEN ? AND ? "
    "OR cdr.callto IN (?) AND cdr.ts BETWEEN ? AND ? ORDER BY cdr.ts, cdr.callid, cdr.sn"
)
SEED_START_TS = 1767225600  # 2026-01-01, as bench/small_flows.py's SEED_START
FRAMES = (0, 128, 512, 1024, 2048, 3072, 4090, 6000, 8180)
READS = 2000


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in (
        "journal_mode=WAL", "synchronous=NORMAL", "cache_size=-65536", "temp_store=MEMORY",
        "mmap_size=1073741824", "wal_autocheckpoint=0",
    ):  # fmt: skip
        conn.execute(f"PRAGMA {pragma}")
    return conn


def _commit(writer: sqlite3.Connection) -> None:
    writer.execute("BEGIN IMMEDIATE")
    for _ in range(8):
        writer.execute(
            "INSERT INTO scratch (k, v) VALUES (?, ?)", (os.urandom(8).hex(), os.urandom(300))
        )
    writer.execute("COMMIT")


def _frames(wal: Path, page_size: int) -> int:
    return max(0, (os.path.getsize(wal) - 32) // (24 + page_size)) if wal.exists() else 0


def _reads(reader: sqlite3.Connection, rng: random.Random, count: int) -> float:
    """Microseconds of CPU a day read, each in its own read transaction."""
    started = time.process_time()
    for _ in range(count):
        ext = str(1000 + rng.randrange(50))
        day = SEED_START_TS + 86400 * rng.randrange(365)
        reader.execute("BEGIN")
        reader.execute(DAY_READ, (ext, day, day + 86399, ext, day, day + 86399)).fetchall()
        reader.execute("COMMIT")
    return (time.process_time() - started) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="bench/data/seed-1000000-1.db")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "wal.db"
        with sqlite3.connect(args.store) as source, sqlite3.connect(path) as copy:
            source.backup(copy)
        writer, reader = _connect(path), _connect(path)
        page_size = int(writer.execute("PRAGMA page_size").fetchone()[0])
        writer.execute("CREATE TABLE scratch (id INTEGER PRIMARY KEY, k TEXT, v BLOB)")
        writer.execute("CREATE INDEX scratch_k ON scratch (k)")
        wal = Path(f"{path}-wal")
        rng = random.Random(7)
        _reads(reader, rng, 500)  # the map and the caches warm
        cpu: dict[int, list[float]] = {frames: [] for frames in FRAMES}
        for _ in range(args.rounds):
            writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            for frames in FRAMES:
                while _frames(wal, page_size) < frames:
                    _commit(writer)
                cpu[frames].append(_reads(reader, rng, READS))
        writer.close()
        reader.close()
    print(f"page size {page_size}, {READS} day reads a round, {args.rounds} rounds")
    for frames, each in cpu.items():
        mib = frames * page_size / 2**20
        print(
            f"frames not copied ~{frames:5d} ({mib:5.1f} MiB): day read "
            f"{min(each):6.1f} us CPU min, {statistics.median(each):6.1f} median"
        )


if __name__ == "__main__":
    main()
