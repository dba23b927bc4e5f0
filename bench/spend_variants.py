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
import secrets
import time
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from cdrgate.cdr import CSV_HEADER_BYTES
from cdrgate.storage import session_spend
from cdrgate.storage.cdrs import CdrQuery
from cdrgate.storage.pg_loop import _asyncpg_dsn
from cdrgate.storage.randoms import RandomRow
from cdrgate.timefmt import parse_pbx_time

TOKEN = "b" * 64
PEER = "127.0.0.1"
PAGE = 1000
FIRST_DAY = parse_pbx_time("2026-01-01 00:00:00")  # ``cdrgate seed``'s year
MARCH = (59, 90)  # March 2026's days of the year, from 0
SUBQUERY_ORDER = " ORDER BY cdr.ts, cdr.callid, cdr.sn \n LIMIT"
AGG_ORDER = "array_agg(day.line ORDER BY day.ts, day.callid, day.sn)"


def backend_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    dsn, settings = _asyncpg_dsn(make_url(database))
    settings = {**settings, "jit": "off", "plan_cache_mode": "force_generic_plan"}
    conn = await asyncpg.connect(dsn, server_settings=settings)
    now = int(time.time() * 1000)
    await conn.execute(
        "INSERT INTO api_account (name, password_hash, created_ms, updated_ms) "
        "VALUES ('bench-statements', 'x', $1, $1) ON CONFLICT DO NOTHING",
        now,
    )
    await conn.execute(
        "INSERT INTO api_token (token_hash, account, client_ip, created_ms, last_seen_ms) "
        "VALUES ($1, 'bench-statements', $2, $3, $4) ON CONFLICT (token_hash) "
        "DO UPDATE SET last_seen_ms = excluded.last_seen_ms",
        TOKEN, PEER, now, now + 10**9,
    )  # fmt: skip
    record: dict[str, Any] = {
        "at_ms": now, "account": None, "client_ip": PEER, "api_version": "v1.1.0",
        "selector": "", "starttime": "", "endtime": "", "rows": 0, "bytes": 0, "outcome": "ok",
        "errno": None, "kind": "cdr",
    }  # fmt: skip
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
                day = FIRST_DAY + 86400 * picker.randrange(*days)
                query = CdrQuery(day, day + 86399, (str(1000 + picker.randrange(50)),))
                spent = RandomRow(
                    now + 10**8, secrets.token_hex(32), TOKEN, query.extensions[0],  # type: ignore[index]
                    day, day + 86399, PEER, None, now,
                )  # fmt: skip
                values = session_spend.params(
                    TOKEN, now - 5000, now - 10**7, PEER, query, PAGE, 0, spent, record,
                    len(CSV_HEADER_BYTES),
                )  # fmt: skip
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
