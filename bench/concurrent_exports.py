"""More downloads at once than a process has PostgreSQL connections: each must queue for one,
or be refused with its documented errno (20010: too many downloads), never answered 500 nor
left hanging. Prints each scenario's outcomes, its wall time and rows/s, and the server's
peak number of cdrgate backends (pg_stat_activity, sampled every 20 ms).

    PYTHONPATH=<build's src> .venv/bin/python bench/concurrent_exports.py --database URL
        [--clients 16] [--per-account 8,0] [--workers 1] [--timeout 120]

URL: a seeded PostgreSQL store (``cdrgate seed --count 200000``). Each client downloads one
month of every extension (``all``: ~16,000 rows of a 200k store, a paged export). The
per-account limit (``export_max_per_account``, 8 by default) refuses the bench user's
downloads past it with 20010; ``0`` lifts it, so every client's export reads its pages through
the downloads' pool at once. Bounded: each download gives up after ``--timeout`` seconds
(counted as hung).
"""

from __future__ import annotations

import argparse
import collections
import os
import threading
import time

import benchlib as b
import httpx
import psycopg

MONTH = ("2026-03-01 00:00:00", "2026-03-31 23:59:59")


def peak_backends(dsn: str, stop: threading.Event, peak: list[int]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not stop.wait(0.02):
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'cdrgate%'"
            ).fetchone()
            peak[0] = max(peak[0], int(row[0]) if row else 0)


def one_download(server: b.Server, timeout: float, outcomes: collections.Counter[str]) -> int:
    """One client's download: its outcome counted; the rows it received."""
    with server.client(timeout=timeout) as client:
        token = b.login(client, server)
        random = b.get_random(client, token, "all", *MONTH)
        params = b.download_params(token, random, "all", *MONTH)
        try:
            response = client.get(f"{b.API}/cdr/download", params=params)
        except httpx.TimeoutException:
            outcomes["hung"] += 1
            return 0
        except httpx.HTTPError as exc:
            outcomes[f"broken ({type(exc).__name__})"] += 1
            return 0
    if response.status_code != 200:
        outcomes[f"HTTP {response.status_code}"] += 1
        return 0
    if response.headers.get("content-type", "").startswith("text/csv"):
        outcomes["ok"] += 1
        return response.text.count("\n") - 1
    outcomes[f"errno {response.json().get('errno')}"] += 1
    return 0


def scenario(server: b.Server, dsn: str, clients: int, timeout: float) -> None:
    outcomes: collections.Counter[str] = collections.Counter()
    rows = [0] * clients
    stop, peak = threading.Event(), [0]
    watcher = threading.Thread(target=peak_backends, args=(dsn, stop, peak))
    watcher.start()
    start = threading.Barrier(clients)

    def client(index: int) -> None:
        start.wait()
        rows[index] = one_download(server, timeout, outcomes)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    stop.set()
    watcher.join()
    total = sum(rows)
    b.say(
        f"  {clients} clients: {dict(sorted(outcomes.items()))}  {elapsed:.2f} s  "
        f"{total / elapsed:,.0f} rows/s  ({total:,} rows)  peak cdrgate backends {peak[0]}  "
        f"load {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True, help="a seeded PostgreSQL store's URL")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--per-account", default="8,0", help="export_max_per_account values")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    b.say(f"== concurrent_exports | workers {args.workers} | {b.machine()}")
    dsn = args.database.replace("postgresql+psycopg://", "postgresql://")
    extra = ["--workers", str(args.workers)] if args.workers > 1 else []
    for limit in args.per_account.split(","):
        env = {"CDRGATE_EXPORT_MAX_PER_ACCOUNT": limit}
        with b.serve(args.database, *extra, env=env) as server:
            b.say(f" export_max_per_account {limit}")
            scenario(server, dsn, args.clients, args.timeout)


if __name__ == "__main__":
    main()
