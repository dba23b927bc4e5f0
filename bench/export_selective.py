"""Target 2: one extension over one day from a big store; latency of get_random + download.

    .venv/bin/python bench/export_selective.py [--rows 5000000] [--flows 300] [--database URL]

One client, keep-alive, logged in once. Each flow picks a (deterministic) random extension
and day and times get_random + the complete download. Reference, same server, same client,
interleaved: GET / (a trivial endpoint), so the figure shows what the flow adds over the
HTTP round trip itself on this machine at this moment.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import date, timedelta

import benchlib as b

SEED_START = date(2026, 1, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--flows", type=int, default=300)
    parser.add_argument("--database", help="use this database instead of a seeded SQLite file")
    args = parser.parse_args()
    b.say(f"== export_selective | {b.machine()}")
    database_url = args.database or b.url(b.seeded_db(args.rows))
    picker = random.Random(5)
    flow_ms: list[float] = []
    trivial_ms: list[float] = []
    rows_seen: list[int] = []
    with b.serve(database_url) as server, server.client(timeout=30) as client:
        token = b.login(client, server)
        for _ in range(args.flows):
            ext = str(1000 + picker.randrange(50))
            day = SEED_START + timedelta(days=picker.randrange(365))
            start, end = f"{day} 00:00:00", f"{day} 23:59:59"
            started = time.perf_counter()
            client.get("/").raise_for_status()
            trivial_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            random_key = b.get_random(client, token, ext, start, end)
            params = b.download_params(token, random_key, ext, start, end)
            body = client.get(f"{b.API}/cdr/download", params=params).content
            flow_ms.append((time.perf_counter() - started) * 1000)
            if not body.startswith(b"callid,") and b'"errno"' not in body:
                raise SystemExit(f"unexpected download answer: {body[:200]!r}")
            rows_seen.append(max(body.count(b"\n") - 1, 0))
    b.say(f"rows per download: median {statistics.median(rows_seen):.0f}, max {max(rows_seen)}")
    for name, values in (("GET / (reference)", trivial_ms), ("get_random+download", flow_ms)):
        b.say(
            f"  {name:<22} p50 {statistics.median(values):6.1f} ms  "
            f"p99 {b.percentile(values, 99):6.1f} ms  max {max(values):6.1f} ms  (n={len(values)})"
        )
    p99 = b.percentile(flow_ms, 99)
    b.say(
        f"RESULT export_selective: p99 {p99:.1f} ms (target < 50 ms), "
        f"{p99 / b.percentile(trivial_ms, 99):.1f}x the p99 of GET /"
    )


if __name__ == "__main__":
    main()
