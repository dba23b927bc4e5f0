"""Issue 15: the web console's pages on a big store, timed at the client on loopback.

    .venv/bin/python bench/console_pages.py [--rows 5000000] [--pages 200] [--database URL]

One client, keep-alive, against a real `cdrgate serve`; the session cookie is an API login
token (docs/console.md), so the bench logs in through the API and sets it.
1. `/ui/cdrs` for one extension over one calendar month (random extension and month each
   time), interleaved with `GET /` as the reference round trip: the list page renders 50
   rows and counts the month's matches;
2. the dashboard `/ui/?day=` for random days of the seeded year (five `/v1/stats` queries).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import benchlib as b
import httpx


def timed_get(client: httpx.Client, path: str, params: dict[str, str]) -> float:
    started = time.perf_counter()
    response = client.get(path, params=params)
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    if "Sign in" in response.text and "Sign out" not in response.text:
        raise RuntimeError("the console answered the sign-in page: session not accepted")
    return elapsed


def list_pages(client: httpx.Client, pages: int) -> None:
    picker = random.Random(15)
    page_ms, trivial_ms = [], []
    for _ in range(pages):
        ext = str(1000 + picker.randrange(50))
        month = 1 + picker.randrange(12)
        until = "2027-01-01 00:00:00" if month == 12 else f"2026-{month + 1:02d}-01 00:00:00"
        params = {"number": ext, "from": f"2026-{month:02d}-01 00:00:00", "until": until}
        trivial_ms.append(timed_get(client, "/", {}))
        page_ms.append(timed_get(client, "/ui/cdrs", params))
    for name, values in (("GET / (reference)", trivial_ms), ("list page", page_ms)):
        b.say(
            f"  {name:<18} p50 {statistics.median(values):6.1f} ms  "
            f"p95 {b.percentile(values, 95):6.1f} ms  (n={len(values)})"
        )
    b.say(f"RESULT console_list: p95 {b.percentile(page_ms, 95):.1f} ms (target < 150 ms)")


def dashboards(client: httpx.Client, count: int) -> None:
    picker = random.Random(16)
    times = []
    for _ in range(count):
        day = f"2026-{1 + picker.randrange(12):02d}-{1 + picker.randrange(28):02d}"
        times.append(timed_get(client, "/ui/", {"day": day}) / 1000)
    b.say(f"RESULT console_dashboard: {b.spread(times)} (target < 1 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--dashboards", type=int, default=10)
    parser.add_argument("--database", help="use this database instead of a seeded SQLite file")
    args = parser.parse_args()
    b.say(f"== console_pages | {b.machine()}")
    database_url = args.database or b.url(b.seeded_db(args.rows))
    with b.serve(database_url) as server, server.client(timeout=120) as client:
        client.cookies.set("cdrgate_session", b.login(client, server), path="/ui")
        list_pages(client, args.pages)
        dashboards(client, args.dashboards)


if __name__ == "__main__":
    main()
