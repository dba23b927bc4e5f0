"""A small download's one PostgreSQL statement (``session_spend``) against textual variants of
it: the PostgreSQL backend's CPU a download, interleaved rounds on one connection, as the
event loop runs it (asyncpg, generic plans). The variants are measurements only, not
alternatives the code may use (bench/RESULTS.md, twenty-third round, second part):

- ``current``: the statement as ``session_spend`` builds it;
- ``no-order``: the day's subquery without its ORDER BY (the aggregate orders the lines);
- ``agg-plain``: ``array_agg`` without its ORDER BY (the order then rests on the subquery's);
- ``no-conflict``: the random's INSERT without ON CONFLICT DO NOTHING;
- ``month``: the day read from its month's table (``cdr_pYYYYMM``) instead of ``cdr``; with
  ``--march`` only (every day then falls in March 2026, one month's table).

    .venv/bin/python bench/spend_variants.py --database postgresql://.../copy \\
        [--downloads 3000] [--rounds 3] [--variants current,no-order] [--march]

Use a fresh copy of a seeded store (``cdrgate seed``): it writes a bench account and token,
and every download spends a random and writes an audit record. The backend's CPU is read from
/proc (the server must run on this machine; a tick is 10 ms: 3,000 downloads resolve ~3 us).
Bounded: rounds x variants x downloads statements.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time

from download_statements import a_download, backend_cpu, bench_connection, one_statement_values

from cdrgate.storage import session_spend
from cdrgate.storage.cdrs import CdrQuery

MARCH = (59, 90)  # March 2026's days of the year, from 0
SUBQUERY_ORDER = " ORDER BY cdr.ts, cdr.callid, cdr.sn \n LIMIT"
AGG_ORDER = "array_agg(day.line ORDER BY day.ts, day.callid, day.sn)"


def variants(sql: str) -> dict[str, str]:
    for part in (SUBQUERY_ORDER, AGG_ORDER, " ON CONFLICT DO NOTHING", "FROM cdr \n"):
        assert part in sql, f"the statement changed: {part!r} not in it"
    return {
        "current": sql,
        "no-order": sql.replace(SUBQUERY_ORDER, "\n LIMIT"),
        "agg-plain": sql.replace(AGG_ORDER, "array_agg(day.line)"),
        "no-conflict": sql.replace(" ON CONFLICT DO NOTHING", ""),
        "month": sql.replace("FROM cdr \n", "FROM cdr_p202603 AS cdr \n"),
    }


async def main(database: str, downloads: int, rounds: int, names: list[str], march: bool) -> None:
    assert march or "month" not in names, "the month variant reads March: use --march"
    conn, now, record = await bench_connection(database)
    picker = random.Random(1)
    days = MARCH if march else (0, 365)
    statement = session_spend.statement(CdrQuery(0, 1, ("1",)))
    texts = variants(statement.numbered_sql)
    pid = conn.get_server_pid()
    for turn in range(rounds):
        for name in names:
            sql = texts[name]
            cpu, backend = time.process_time(), backend_cpu(pid)
            for _ in range(downloads):
                query, spent = a_download(picker, now, days)
                values = one_statement_values(query, spent, now, record)
                row = await conn.fetchrow(sql, *statement.args(values))
                assert session_spend.spent_of(row) is not None, "spent"
            cpu, backend = time.process_time() - cpu, backend_cpu(pid) - backend
            print(
                f"round {turn + 1} {name:<12}: backend {1e6 * backend / downloads:6.1f} us, "
                f"client {1e6 * cpu / downloads:6.1f} us a download  "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--downloads", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default="current,no-order,agg-plain,no-conflict")
    parser.add_argument("--march", action="store_true", help="days of March 2026 only")
    args = parser.parse_args()
    asyncio.run(
        main(args.database, args.downloads, args.rounds, args.variants.split(","), args.march)
    )
