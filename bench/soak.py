"""Soak: mixed Yeastar flows against a real `cdrgate serve` for a while (2 minutes by default).

    .venv/bin/python bench/soak.py [--seconds 120] [--workers 4] [--self-signed]

Passes (exit 0) with zero unexpected answers and the server's memory flat (RSS growth after
the first quarter of the flows under --rss-limit-mib). Prints the state tables at the end:
sessions are logged out, randoms wait for the purge, only the guessing address holds a
lockout. A short, fixed-size version of the same flows (cdrgate.testing.soak) runs in the
test suite (tests/security/test_soak.py).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
from pathlib import Path

import benchlib as b

from cdrgate.testing.soak import run_soak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--self-signed", action="store_true", help="soak over HTTPS")
    parser.add_argument("--rss-limit-mib", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cdrgate-soak-") as directory:
        path = Path(directory) / "cdrgate.db"
        # The flows download May 2026, so the seeded calls fall there.
        seed = ["seed", "--count", "300", "--seed", "7", "--start", "2026-05-01", "--days", "30"]
        b.run([b.CDRGATE, *seed, "--database", b.url(path)])
        serve_args = ("--self-signed",) if args.self_signed else ()
        scheme = "https" if args.self_signed else "http"
        with b.serve(b.url(path), *serve_args, scheme=scheme) as server:
            print(f"soaking {server.base} for {args.seconds:.0f} s, {args.workers} workers")
            report = run_soak(
                server.base, server.md5, seconds=args.seconds, workers=args.workers,
                pid=server.served.process.pid, username=b.BENCH_USER,
            )  # fmt: skip
        conn = sqlite3.connect(path)
        tables = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("api_token", "cdr_random", "login_guard", "download_audit")
        }
        conn.close()
    growth_mib = report.rss_growth_kib() / 1024
    print(f"flows        {report.flows} ({report.flows / report.seconds:.1f}/s)")
    print(f"requests     {report.requests} ({report.requests / report.seconds:.1f}/s)")
    print(f"errors       {report.error_count}")
    for error in report.errors:
        print(f"  {error}")
    print(
        f"rss          {report.rss_kib[0] / 1024:.1f} -> {report.rss_kib[-1] / 1024:.1f} MiB"
        f" (growth after warm-up {growth_mib:+.1f} MiB)"
    )
    print("tables       " + ", ".join(f"{name}={count}" for name, count in tables.items()))
    ok = report.error_count == 0 and growth_mib < args.rss_limit_mib
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
