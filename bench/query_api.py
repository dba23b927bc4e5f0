"""Issue 14: the JSON query API on a big store (first page, cursor throughput, stats per day).

    .venv/bin/python bench/query_api.py [--rows 5000000] [--pages 300] [--database URL]

One client, keep-alive, logged in once, against a real `cdrgate serve`:
1. first page of `/v1/cdrs` for one extension over one calendar month (random extension and
   month each time), interleaved with `GET /` as the reference round trip;
2. following `next_cursor` (limit 10,000) through the first 100,000 rows of the whole table,
   newest first: rows per second;
3. `/v1/stats?group=day` over the seeded year.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import benchlib as b
import httpx

CURSOR_ROWS = 100_000


def first_pages(client: httpx.Client, auth: dict[str, str], pages: int) -> None:
    picker = random.Random(14)
    page_ms: list[float] = []
    trivial_ms: list[float] = []
    items: list[int] = []
    for _ in range(pages):
        ext = str(1000 + picker.randrange(50))
        month = 1 + picker.randrange(12)
        until = "2027-01-01 00:00:00" if month == 12 else f"2026-{month + 1:02d}-01 00:00:00"
        params = {"number": ext, "from": f"2026-{month:02d}-01 00:00:00", "until": until}
        started = time.perf_counter()
        client.get("/").raise_for_status()
        trivial_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        response = client.get("/v1/cdrs", params=params, headers=auth)
        page_ms.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        items.append(len(response.json()["items"]))
    b.say(f"items per first page: median {statistics.median(items):.0f}")
    for name, values in (("GET / (reference)", trivial_ms), ("first page", page_ms)):
        b.say(
            f"  {name:<18} p50 {statistics.median(values):6.1f} ms  "
            f"p99 {b.percentile(values, 99):6.1f} ms  (n={len(values)})"
        )
    b.say(f"RESULT query_first_page: p99 {b.percentile(page_ms, 99):.1f} ms (target < 50 ms)")


def follow_cursor(client: httpx.Client, auth: dict[str, str]) -> None:
    seen, cursor = 0, None
    started = time.perf_counter()
    while seen < CURSOR_ROWS:
        params = {"limit": "10000", **({"cursor": cursor} if cursor else {})}
        body = client.get("/v1/cdrs", params=params, headers=auth).json()
        seen += len(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    elapsed = time.perf_counter() - started
    b.say(f"RESULT query_cursor: {seen} rows in {elapsed:.2f} s = {seen / elapsed:,.0f} rows/s "
          "(target >= 50,000 rows/s)")  # fmt: skip


def stats_per_day(client: httpx.Client, auth: dict[str, str]) -> None:
    params = {"group": "day", "from": "2026-01-01 00:00:00", "until": "2027-01-01 00:00:00"}
    times = []
    for _ in range(3):
        started = time.perf_counter()
        response = client.get("/v1/stats", params=params, headers=auth)
        times.append(time.perf_counter() - started)
        response.raise_for_status()
    groups = len(response.json()["groups"])
    b.say(f"RESULT query_stats_day: {groups} days, {b.spread(times)} (target < 1 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--database", help="use this database instead of a seeded SQLite file")
    args = parser.parse_args()
    b.say(f"== query_api | {b.machine()}")
    database_url = args.database or b.url(b.seeded_db(args.rows))
    with b.serve(database_url) as server, server.client(timeout=120) as client:
        auth = {"Authorization": f"Bearer {b.login(client, server)}"}
        first_pages(client, auth, args.pages)
        follow_cursor(client, auth)
        stats_per_day(client, auth)


if __name__ == "__main__":
    main()
