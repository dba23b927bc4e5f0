"""A small download's one PostgreSQL statement (``session_spend``) against textual variants of
it: the PostgreSQL backend's CPU a download, interleaved rounds on one connection, as the
event loop runs it (asyncpg, generic plans). The variants are measurements only, not
alternatives the code may use (bench/RESULTS.md, twenty-third round, second part):

- ``current``: the statement as ``session_spend`` builds it;
- ``no-order``: the day's subquery without its ORDER BY (the aggregate orders the lines);
- ``agg-plain``: ``array_agg`` without its ORDER BY (the order then rests on the subquery's);
- ``no-conflict``: the random's INSERT without ON CONFLICT DO NOTHING;
- ``month``: the day read from its month's table (``cdr_p202603``) instead of ``cdr``, as
  ``session_spend.statement(query, month)`` builds it (``storage/day_months.py``); with
  ``--march`` only (every day then falls in March 2026, one month's table);
- ``months``: each day read from its own month's table, as the server does for a range inside
  one month whose partition it knows (``day_months``): a statement a month a connection,
  each planned (and re-planned after an invalidation) apart.

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
import random
from functools import partial

from download_statements import a_download, bench_connection, one_statement_values, timed_rounds

from cdrgate.storage import day_months, session_spend
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
        "month": session_spend.statement(CdrQuery(0, 1, ("1",)), "cdr_p202603").numbered_sql,
    }


def _months_sql(query: CdrQuery) -> str:
    return session_spend.statement(query, day_months.month_of(query)).numbered_sql


async def main(database: str, downloads: int, rounds: int, names: list[str], march: bool) -> None:
    assert march or "month" not in names, "the month variant reads March: use --march"
    conn, now, record = await bench_connection(database)
    picker = random.Random(1)
    days = MARCH if march else (0, 365)
    statement = session_spend.statement(CdrQuery(0, 1, ("1",)))
    texts = variants(statement.numbered_sql)

    async def download(name: str) -> None:
        query, spent = a_download(picker, now, days)
        values = one_statement_values(query, spent, now, record)
        sql = texts[name] if name != "months" else _months_sql(query)
        row = await conn.fetchrow(sql, *statement.args(values))
        assert session_spend.spent_of(row) is not None, "spent"

    await timed_rounds(conn, rounds, downloads, {name: partial(download, name) for name in names})
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
