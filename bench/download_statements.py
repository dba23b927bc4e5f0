"""A small download's statements on PostgreSQL through asyncpg, as the event loop runs them:
the two of before (``session_day``'s token-with-the-day read, then ``signed_spend``'s spend
with its audit record) against the one (``session_spend``), interleaved rounds; the client's
CPU and the backend's a download (bench/RESULTS.md, twenty-third round).

    .venv/bin/python bench/download_statements.py --database postgresql://.../copy \\
        [--downloads 2000] [--rounds 4]

Use a fresh copy of a seeded store (``cdrgate seed``): it writes a bench account and token,
and every download spends a random and writes an audit record. The backend's CPU is read from
/proc: the server must run on this machine. Bounded: rounds x 2 x downloads statements.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

import asyncpg
import benchlib as b
from sqlalchemy.engine import make_url

from cdrgate.cdr import CSV_HEADER_BYTES
from cdrgate.storage import session_day, session_spend, signed_spend
from cdrgate.storage.cdrs import CdrQuery
from cdrgate.storage.pg_loop import _asyncpg_dsn
from cdrgate.storage.randoms import RandomRow
from cdrgate.timefmt import parse_pbx_time

TOKEN = "b" * 64
PEER = "127.0.0.1"
PAGE = 1000
FIRST_DAY = parse_pbx_time("2026-01-01 00:00:00")  # ``cdrgate seed``'s year


async def bench_connection(database: str) -> tuple[Any, int, dict[str, Any]]:
    """A connection set as the loop's (``storage/pg_loop.py``), with the bench's account and
    token written; the time now (ms) and an audit record to write with each spend."""
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
    return conn, now, record


def a_download(
    picker: random.Random, now: int, days: tuple[int, int] = (0, 365)
) -> tuple[CdrQuery, RandomRow]:
    """One extension's day of the seed's year (its ``days``, from 0) and a random to spend."""
    day = FIRST_DAY + 86400 * picker.randrange(*days)
    query = CdrQuery(day, day + 86399, (str(1000 + picker.randrange(50)),))
    spent = RandomRow(
        now + 10**8, secrets.token_hex(32), TOKEN, query.extensions[0],  # type: ignore[index]
        day, day + 86399, PEER, None, now,
    )  # fmt: skip
    return query, spent


def one_statement_values(
    query: CdrQuery, spent: RandomRow, now: int, record: dict[str, Any]
) -> dict[str, Any]:
    """``session_spend``'s values for a download that spends."""
    return session_spend.params(
        TOKEN, now - 5000, now - 10**7, PEER, query, PAGE, 0, spent, record,
        len(CSV_HEADER_BYTES),
    )  # fmt: skip


async def timed_rounds(
    conn: Any, rounds: int, downloads: int, runs: Mapping[str, Callable[[], Awaitable[None]]]
) -> None:
    """``rounds`` rounds of ``downloads`` calls of each of ``runs`` in turn (interleaved), each
    printed with the client's CPU and ``conn``'s backend's a download."""
    pid = conn.get_server_pid()
    width = max(map(len, runs))
    for turn in range(rounds):
        for name, run in runs.items():
            cpu, backend = time.process_time(), b.cpu_seconds(pid)
            for _ in range(downloads):
                await run()
            cpu, backend = time.process_time() - cpu, b.cpu_seconds(pid) - backend
            print(
                f"round {turn + 1} {name:<{width}}: client {1e6 * cpu / downloads:6.1f} us, "
                f"backend {1e6 * backend / downloads:6.1f} us a download  "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )


Runner = Callable[[CdrQuery, RandomRow], Awaitable[None]]


async def main(database: str, downloads: int, rounds: int) -> None:
    conn, now, record = await bench_connection(database)
    picker = random.Random(1)

    async def two(query: CdrQuery, spent: RandomRow) -> None:
        read = session_day.statement(query)
        values = session_day.params(TOKEN, now - 5000, PEER, query, PAGE)
        await conn.fetchrow(read.numbered_sql, *read.args(values))
        spend = signed_spend.statement()
        row = await conn.fetchrow(
            spend.numbered_sql, *spend.args(signed_spend.params(spent, record))
        )
        assert row is not None, "spent"

    async def one(query: CdrQuery, spent: RandomRow) -> None:
        statement = session_spend.statement(query)
        values = one_statement_values(query, spent, now, record)
        row = await conn.fetchrow(statement.numbered_sql, *statement.args(values))
        assert session_spend.spent_of(row) is not None, "spent"

    async def download(run: Runner) -> None:
        await run(*a_download(picker, now))

    await timed_rounds(conn, rounds, downloads, {"two statements": partial(download, two),
                                                 "one statement": partial(download, one)})  # fmt: skip
    await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--downloads", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(main(args.database, args.downloads, args.rounds))
