"""A full export's page reads alone, in process: rows fetched and joined vs joined by SQLite.

    .venv/bin/python bench/export_page_read.py [--rows 1000000] [--page 8000] [--repeat 2]

The seeded store read in pages of about ``--page`` rows (whole seconds, as the export cuts
them) on one read-only connection, lines as UTF-8 bytes, both ways interleaved; prints the CPU
and wall seconds of each pass and checks both give the same bytes.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import time
from collections.abc import Callable

import benchlib as b

ROWS = "SELECT line FROM cdr WHERE ts BETWEEN ? AND ? ORDER BY ts, callid, sn"
JOINED = f"SELECT count(*), group_concat(line, '') FROM ({ROWS})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--page", type=int, default=8000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    b.say(f"== export_page_read | {b.machine()}")
    conn = sqlite3.connect(f"file:{b.seeded_db(args.rows)}?mode=ro", uri=True)
    conn.text_factory = bytes
    keys = [ts for (ts,) in conn.execute("SELECT ts FROM cdr ORDER BY ts, callid, sn")]
    starts = sorted(set(keys[:: args.page]))
    pages = list(zip(starts, [*starts[1:], keys[-1] + 1], strict=True))

    def rows() -> bytes:
        return b"".join(
            b"".join(line for (line,) in conn.execute(ROWS, (lo, hi - 1))) for lo, hi in pages
        )

    def joined() -> bytes:
        return b"".join(conn.execute(JOINED, (lo, hi - 1)).fetchone()[1] for lo, hi in pages)

    results: dict[str, bytes] = {}
    passes: list[tuple[str, Callable[[], bytes]]] = [("rows", rows), ("joined", joined)]
    for _ in range(args.repeat):
        for name, read in passes:
            cpu, wall = time.process_time(), time.perf_counter()
            results[name] = read()
            load = os.getloadavg()[0]
            b.say(
                f"  {name:7s} {len(pages)} pages: cpu {time.process_time() - cpu:.3f} s, "
                f"wall {time.perf_counter() - wall:.3f} s (load {load:.2f})"
            )
    b.say(f"RESULT export_page_read: same bytes: {results['rows'] == results['joined']}")


if __name__ == "__main__":
    main()
