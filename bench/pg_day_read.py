"""The PostgreSQL backend's CPU a small download's day read costs, for variants of the read.

    scripts/with-postgres.sh sh -c '... cdrgate seed --count 1000000 --database $DSN/s1m;
        .venv/bin/python bench/pg_day_read.py $DSN/s1m[,$DSN/other] [variant,...]'

Each variant is prepared once per monthly partition (``cdr_pYYYYMM``, as the server reads a
day inside a month: storage/day_months.py) with a generic plan, as asyncpg runs the loop's
statement, and executed for (extension, day) pairs in a fixed random order over the whole
seeded year (the bench's flows pick any day, so a store larger than shared_buffers misses as
it does under bench/small_flows.py). The figure is the backend's CPU (/proc) over the loop
divided by the executions; databases and variants are interleaved, round by round. Beside
it, this process's CPU a read (``client``): asyncpg's decoding of the answer and the
download's body made from it (the lines joined and encoded, as ``Page.of_lines`` does; bytes
taken as they are), the share of a download the server's own process pays for its form.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any

import asyncpg
from benchlib import cpu_seconds, say

_EITHER = (
    "WHERE cdr.callfrom = $1 AND cdr.ts BETWEEN $2 AND $3 "
    "OR cdr.callto = $1 AND cdr.ts BETWEEN $2 AND $3"
)
_ORDERED = "ORDER BY cdr.ts, cdr.callid, cdr.sn LIMIT $4"
_SIDES = (
    "SELECT cdr.line, cdr.ts, cdr.callid, cdr.sn FROM {month} AS cdr "
    "WHERE cdr.callfrom = $1 AND cdr.ts BETWEEN $2 AND $3 UNION ALL "
    "SELECT cdr.line, cdr.ts, cdr.callid, cdr.sn FROM {month} AS cdr "
    "WHERE cdr.callto = $1 AND cdr.callfrom <> $1 AND cdr.ts BETWEEN $2 AND $3"
)
# The day read of storage/session_day.py (its subquery and aggregate), and variants that
# bound where its cost goes. ``{month}`` is the partition read.
VARIANTS = {
    "current": "SELECT coalesce(array_agg(day.line ORDER BY day.ts, day.callid, day.sn), '{}') "
    f"FROM (SELECT cdr.line, cdr.ts, cdr.callid, cdr.sn FROM {{month}} AS cdr {_EITHER} "
    f"{_ORDERED}) AS day",
    # The aggregate's own sort left out (the subquery's order kept): the second sort's cost.
    "agg_unsorted": "SELECT coalesce(array_agg(day.line), '{}') FROM (SELECT cdr.line, "
    f"cdr.ts, cdr.callid, cdr.sn FROM {{month}} AS cdr {_EITHER} {_ORDERED}) AS day",
    # No line carried: the cost of the line's bytes through the sorts and the array.
    "no_line": "SELECT coalesce(array_agg(day.sn ORDER BY day.ts, day.callid, day.sn), '{}') "
    f"FROM (SELECT cdr.sn, cdr.ts, cdr.callid FROM {{month}} AS cdr {_EITHER} {_ORDERED}) "
    "AS day",
    # The rows found and their heap pages visited, nothing carried: the scan alone.
    "count_only": f"SELECT count(*) FROM (SELECT 1 FROM {{month}} AS cdr {_EITHER} LIMIT $4) d",
    # Two index scans appended (the callee's side without the caller's rows) instead of
    # BitmapOr: index-only scans where covering indexes exist.
    "union_all": "SELECT coalesce(array_agg(day.line ORDER BY day.ts, day.callid, day.sn), "
    f"'{{}}') FROM (SELECT * FROM ({_SIDES}) AS sides ORDER BY ts, callid, sn LIMIT $4) AS day",
    "trivial": "SELECT $1::text, $2::bigint, $3::bigint, $4::int",
}
_DAY = f"FROM (SELECT cdr.line, cdr.ts, cdr.callid, cdr.sn FROM {{month}} AS cdr {_EITHER} {_ORDERED}) AS day"
_BY = "ORDER BY day.ts, day.callid, day.sn"
# The day in the forms a download's statement could hand it over, each with what
# storage/session_spend.py computes from it (its rows, and its lines' UTF-8 bytes for the audit):
# the array of lines (the current form), one text, one bytea (nothing decoded in the server).
VARIANTS["array_sized"] = (
    "SELECT d, cardinality(d), octet_length(convert_to(array_to_string(d, ''), 'UTF8')) "
    f"FROM (SELECT coalesce(array_agg(day.line {_BY}), '{{}}') AS d {_DAY}) AS x"
)
VARIANTS["text_sized"] = (
    "SELECT t, n, octet_length(convert_to(t, 'UTF8')) "
    f"FROM (SELECT coalesce(string_agg(day.line, '' {_BY}), '') AS t, count(*) AS n {_DAY}) AS x"
)
VARIANTS["bytes_sized"] = (
    "SELECT b, n, octet_length(b) FROM (SELECT convert_to(coalesce(string_agg(day.line, '' "
    f"{_BY}), ''), 'UTF8') AS b, count(*) AS n {_DAY}) AS x"
)
_YEAR_START = 1767225600  # 2026-01-01, cdrgate seed's default start
_LIMIT = 10001


async def _open(dsn: str, names: list[str]) -> tuple[Any, int, dict[tuple[str, int], Any]]:
    conn = await asyncpg.connect(dsn)
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    pid = int(await conn.fetchval("SELECT pg_backend_pid()"))
    prepared = {
        (name, month): await conn.prepare(
            VARIANTS[name].replace("{month}", f"cdr_p2026{month:02d}")
        )
        for name in names
        for month in range(1, 13)
    }
    return conn, pid, prepared


async def main(dsns: list[str], names: list[str], count: int, rounds: int) -> None:
    pairs = [(str(1000 + e), _YEAR_START + 86400 * d) for d in range(365) for e in range(50)]
    random.Random(1).shuffle(pairs)
    opened = [await _open(dsn, names) for dsn in dsns]
    figures: dict[tuple[str, str], list[float]] = {}
    for turn in range(rounds):
        for dsn, (_, pid, prepared) in zip(dsns, opened, strict=True):
            for name in names:
                before, mine = cpu_seconds(pid), time.process_time()
                for i in range(count):
                    ext, day = pairs[(turn * count + i) % len(pairs)]
                    month = time.gmtime(day).tm_mon
                    row = await prepared[(name, month)].fetchrow(ext, day, day + 86399, _LIMIT)
                    _body(row[0])
                spent = (cpu_seconds(pid) - before) / count * 1e6
                client = (time.process_time() - mine) / count * 1e6
                db = dsn.rsplit("/", 1)[-1]
                figures.setdefault((db, name, "backend"), []).append(spent)
                figures.setdefault((db, name, "client"), []).append(client)
    for (db, name, side), runs in figures.items():
        each = " ".join(f"{run:6.1f}" for run in runs)
        say(f"{db:10s} {name:13s} {side:7s} us a read: {each}  min {min(runs):6.1f}")
    for conn, _, _ in opened:
        await conn.close()


def _body(day: Any) -> bytes:
    """A download's body from the day as a variant hands it over (``Page.of_lines``'s work)."""
    if isinstance(day, list):
        return "".join(day).encode()
    if isinstance(day, str):
        return day.encode()
    return day if isinstance(day, bytes) else b""


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("databases", help="comma-separated postgresql:// URLs (seeded stores)")
    parser.add_argument("variants", nargs="?", default=",".join(VARIANTS))
    parser.add_argument("--count", type=int, default=6000, help="executions a round")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.databases.split(","), args.variants.split(","), args.count, args.rounds))
