"""A parallel import's writer's whole work in each SQLite library: the system's (Python's
``sqlite3``) against apsw's, interleaved, CPU and wall per phase (issue 17, sixteenth round).

    .venv/bin/python bench/writer_sqlite.py [--rows 1000000] [--pairs 5]

The phases are the writer's, with its statements: its part of the Yeastar file
(``apsw_writer.WRITER_SHARE``) through the fast path's INSERT with the checks and the tally,
into the store's ``cdr`` with its secondary indexes dropped; the copy of the child's rows
(``parallel.COPY``) from a scratch file made once beforehand by the child's own code; the four
index builds with ``bulk_load``'s sorter settings; the commit (rollback journal, as a first
load has it). Each run is a new process on a fresh copy of the empty migrated store; the load
average is printed beside it. CPU is the process's (the sorter's threads included).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import benchlib as b

from cdrgate.ingest import apsw_writer, parallel, part, yeastar_sql
from cdrgate.ingest.formats import Format, row_mapper
from cdrgate.ingest.profile import SourceProfile
from cdrgate.storage.cdrs import SECONDARY_INDEXES, SORTER_SETTINGS
from cdrgate.storage.db import connection_settings

LIBRARIES = ("sqlite3", "apsw")


def _cut(csv_file: Path) -> int:
    size = csv_file.stat().st_size
    with open(csv_file, "rb") as stream:
        return parallel._line_end_after(stream, int(size * apsw_writer.WRITER_SHARE), size)


def _make_part(csv_file: Path, template: Path, scratch: Path) -> None:
    """The child's part in its scratch file, by the child's code."""
    with sqlite3.connect(template) as conn:
        info = conn.execute("PRAGMA table_info(cdr)").fetchall()
    scratch.unlink(missing_ok=True)
    job = part.Job(
        str(csv_file), _cut(csv_file), csv_file.stat().st_size, str(scratch), "", "", "",
        parallel._columns(info), SourceProfile("bench"), yeastar_sql.CHUNK_BYTES,
    )  # fmt: skip
    part._load(job)


class _Sink:
    """The writer's sink, bare: executemany and the tally, as the store's sink does."""

    def __init__(self, conn: Any, library: str) -> None:
        self.conn, self.library = conn, library

    def add(self, record: object, ts: int | None = None) -> None:
        raise SystemExit("the bench file has no quoted chunk")

    def add_with(self, sql: str, rows: Any, tally: Any) -> Any:
        if self.library == "apsw":
            self.conn.executemany(sql, rows)
        else:
            self.conn.cursor().executemany(sql, rows)
        return tally()


def _run(library: str, csv_file: Path, store: Path, scratch: Path) -> str:
    """One writer's work in ``library``; its phases as text."""
    if library == "apsw":
        import apsw

        conn: Any = apsw.Connection(str(store))
    else:
        conn = sqlite3.connect(store, isolation_level=None)
    for setting in ("journal_mode = DELETE", *connection_settings(30)):
        list(conn.execute(f"PRAGMA {setting}"))
    marks = [(time.process_time(), time.perf_counter())]
    conn.execute("BEGIN IMMEDIATE")
    indexes = list(conn.execute(SECONDARY_INDEXES))
    for name, _ in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    with open(csv_file, "rb") as stream:
        mapper = row_mapper(Format.yeastar, SourceProfile("bench"))
        yeastar_sql.load(stream, _Sink(conn, library), mapper, end=_cut(csv_file))
    marks.append((time.process_time(), time.perf_counter()))
    conn.execute(f"ATTACH '{scratch}' AS {parallel.SCHEMA}")
    conn.execute(parallel.COPY)
    marks.append((time.process_time(), time.perf_counter()))
    for setting in SORTER_SETTINGS:
        list(conn.execute(f"PRAGMA {setting}"))
    for _, create in indexes:
        conn.execute(create)
    marks.append((time.process_time(), time.perf_counter()))
    conn.execute("COMMIT")
    marks.append((time.process_time(), time.perf_counter()))
    conn.close()
    phases = ("half", "copy", "build", "commit")
    spans = [(c1 - c0, w1 - w0) for (c0, w0), (c1, w1) in pairwise(marks)]
    text = " ".join(f"{p} {c:5.2f}/{w:5.2f}" for p, (c, w) in zip(phases, spans, strict=True))
    total_cpu, total_wall = marks[-1][0] - marks[0][0], marks[-1][1] - marks[0][1]
    return f"{text} | total cpu {total_cpu:5.2f} wall {total_wall:5.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--one", nargs=4, metavar=("LIBRARY", "CSV", "STORE", "SCRATCH"))
    args = parser.parse_args()
    if args.one:
        library, *paths = args.one
        print(_run(library, *map(Path, paths)), flush=True)
        return
    if not part.APSW:
        raise SystemExit("apsw is not installed")
    b.say(f"== writer_sqlite | {b.machine()}")
    csv_file = b.yeastar_csv(b.seeded_db(args.rows))
    store, scratch = b.DATA / "writer.db", b.DATA / "writer-part.db"
    b.migrated_copy(store)
    _make_part(csv_file, store, scratch)
    for pair in range(args.pairs):
        # Each pair in the other order, so neither library always runs first.
        for library in LIBRARIES if pair % 2 == 0 else LIBRARIES[::-1]:
            b.migrated_copy(store)  # a fresh copy of the empty migrated store
            load = os.getloadavg()[0]
            command = [sys.executable, __file__, "--one", library, str(csv_file), str(store)]
            done = subprocess.run([*command, str(scratch)], check=True, timeout=300, text=True,
                                  capture_output=True)  # fmt: skip
            b.say(f"  {library:<8} {done.stdout.strip()}   load {load:.2f}")


if __name__ == "__main__":
    main()
