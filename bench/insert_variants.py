"""What the ``cdr`` schema costs a bulk load: the same rows inserted into variants of it.

Rows come from a seeded store (``--source``), are held in memory as tuples, and are inserted
with the plain ``sqlite3`` module in one transaction per variant (WAL, ``synchronous=NORMAL``,
64 MB page cache, temporary storage in memory: what cdrgate uses), into a fresh file each time.
"threaded sorter" variants build their indexes as ``cdrs.bulk_load`` does since the eighth
round (``PRAGMA threads=2``, a 2 MB cache and temporary files for the build). Prints insert and
index-build-plus-commit times per variant; variants are interleaved over ``--repeat`` rounds.

    .venv/bin/python bench/insert_variants.py --source bench/data/seed-1000000-1.db
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time

COLUMNS = (
    "sn", "callid", "ts", "callfrom", "callto", "callduraction", "talkduraction",
    "srctrunkname", "dsttrunkname", "status", "type", "pincode", "recording", "didnumber", "line",
)  # fmt: skip
INDEXES = {
    "ts": "CREATE INDEX ix_cdr_ts_callid_sn ON cdr (ts, callid, sn)",
    "from": "CREATE INDEX ix_cdr_callfrom_ts ON cdr (callfrom, ts)",
    "to": "CREATE INDEX ix_cdr_callto_ts ON cdr (callto, ts)",
    "rec": "CREATE INDEX ix_cdr_recording ON cdr (recording)",
    "rec_partial": "CREATE INDEX ix_cdr_recording ON cdr (recording) WHERE recording != ''",
}
# name -> (with the line column, indexes, build the indexes after the load)
VARIANTS = {
    "current": (True, ("ts", "from", "to", "rec"), False),
    "current, indexes after load": (True, ("ts", "from", "to", "rec"), True),
    "no line": (False, ("ts", "from", "to", "rec"), False),
    "no line, indexes after load": (False, ("ts", "from", "to", "rec"), True),
    "partial recording index": (True, ("ts", "from", "to", "rec_partial"), False),
    "partial rec., indexes after load": (True, ("ts", "from", "to", "rec_partial"), True),
    "no line, partial recording index": (False, ("ts", "from", "to", "rec_partial"), False),
    "no recording index": (True, ("ts", "from", "to"), False),
    # The floor of this table: the uniqueness key alone, no secondary index to build.
    "unique key only": (True, (), False),
    "no line, unique key only": (False, (), False),
}
# Issue 17, eighth round: the index build on the sorter's threads, and the uniqueness key
# as an index built after the load too (a bare table during the load).
THREADED = {
    "partial rec., after load, threaded sorter": (True, ("ts", "from", "to", "rec_partial"), True),
    "unique index after load, threaded sorter": (
        True, ("unique", "ts", "from", "to", "rec_partial"), True,
    ),
}  # fmt: skip
VARIANTS.update(THREADED)
INDEXES["unique"] = "CREATE UNIQUE INDEX uq_cdr_sn_callid ON cdr (sn, callid)"


def table_sql(with_line: bool, unique: bool = True) -> str:
    columns = [f"{name} {'INTEGER' if name in ('ts', 'callduraction', 'talkduraction') else 'TEXT'} NOT NULL"
               for name in COLUMNS if with_line or name != "line"]  # fmt: skip
    key = ", UNIQUE (sn, callid)" if unique else ""
    return "CREATE TABLE cdr (id INTEGER PRIMARY KEY, " + ", ".join(columns) + key + ")"


def run(
    rows: list[tuple[object, ...]],
    with_line: bool,
    indexes: tuple[str, ...],
    after: bool,
    threaded: bool = False,
) -> tuple[float, float]:
    unique_after = "unique" in indexes
    names = [c for c in COLUMNS if with_line or c != "line"]
    data = rows if with_line else [row[:-1] for row in rows]
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        conn = sqlite3.connect(os.path.join(tmp, "v.db"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute(table_sql(with_line, unique=not unique_after))
        if not after:
            for name in indexes:
                conn.execute(INDEXES[name])
        sql = f"INSERT INTO cdr ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) " + (
            "" if unique_after else "ON CONFLICT (sn, callid) DO NOTHING"
        )
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        for at in range(0, len(data), 20000):
            conn.executemany(sql, data[at : at + 20000])
        inserted = time.perf_counter()
        if after:
            if threaded:
                conn.execute("PRAGMA threads=2")
                conn.execute("PRAGMA cache_size=-2000")
                conn.execute("PRAGMA temp_store=FILE")
            for name in indexes:
                conn.execute(INDEXES[name])
        conn.execute("COMMIT")
        done = time.perf_counter()
        conn.close()
    return inserted - started, done - inserted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="a seeded cdrgate SQLite file")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--only", action="append", help="variant name (repeatable)")
    args = parser.parse_args()
    source = sqlite3.connect(f"file:{args.source}?mode=ro", uri=True)
    rows = source.execute(f"SELECT {', '.join(COLUMNS)} FROM cdr ORDER BY id").fetchall()
    print(f"{len(rows)} rows; load average {os.getloadavg()}")
    for round_ in range(args.repeat):
        for name, (with_line, indexes, after) in VARIANTS.items():
            if args.only and name not in args.only:
                continue
            insert_s, finish_s = run(rows, with_line, indexes, after, name in THREADED)
            print(
                f"  {name:34s} insert {insert_s:6.2f} s  index+commit {finish_s:6.2f} s  "
                f"total {insert_s + finish_s:6.2f} s  (round {round_ + 1}, load "
                f"{os.getloadavg()[0]:.1f})",
                flush=True,
            )


if __name__ == "__main__":
    main()
