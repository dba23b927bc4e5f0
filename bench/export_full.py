"""Target 1: full export (extid=all, whole range) over HTTP vs the sqlite3 shell, and peak RSS.

    .venv/bin/python bench/export_full.py [--rows 1000000] [--big 5000000] [--repeat 5]

Reference, same run, same database file: `sqlite3 -csv -header` writing the same 14 columns,
in the same order, to a file. The server side is get_random + the download written to a file
by curl. Both outputs are compared row by row. Then the server's peak RSS (VmHWM) after a
full export of --rows and of --big rows (the 5M store of export_selective; the target
names 3M, a bigger export is the stricter check), each from a fresh server process.

Also printed: the load average, and the CPU seconds the server process used per export
(user + system, from /proc): on a machine shared with other jobs the wall times of both sides
move with the load, the server's CPU time much less.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
from collections.abc import Callable
from itertools import zip_longest
from pathlib import Path

import benchlib as b

START, END = "2000-01-01 00:00:00", "2099-12-31 23:59:59"


def shell_export(db: Path, out: Path) -> None:
    sql = f"SELECT {b.SHELL_COLUMNS} FROM cdr ORDER BY ts, callid, sn;"
    with open(out, "wb") as handle:
        subprocess.run(
            [b.sqlite_cli(), "-readonly", "-csv", "-header", "-newline", "\n", str(db), sql],
            stdout=handle,
            check=True,
        )


PG_COLUMNS = b.SHELL_COLUMNS.replace(
    "strftime('%Y-%m-%d %H:%M:%S', ts, 'unixepoch')",
    "to_char(to_timestamp(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')",
)


def psql_export(database_url: str, out: Path) -> None:
    """The PostgreSQL reference: psql's COPY ... TO STDOUT (CSV, header) of the same rows."""
    sql = f"COPY (SELECT {PG_COLUMNS} FROM cdr ORDER BY ts, callid, sn) TO STDOUT CSV HEADER"
    with open(out, "wb") as handle:
        subprocess.run(["psql", "-X", "-q", database_url, "-c", sql], stdout=handle, check=True)


def same_rows(shell_csv: Path, server_csv: Path) -> bool:
    """Parsed row by row: the shell quotes empty and spaced fields, the server (like the PBX)
    only where RFC 4180 needs it, so the bytes differ but the rows must not."""
    with open(shell_csv, newline="") as left, open(server_csv, newline="") as right:
        return all(a == b for a, b in zip_longest(csv.reader(left), csv.reader(right)))


def server_export(server: b.Server, token: str, out: Path) -> None:
    with server.client() as client:
        random = b.get_random(client, token, "all", START, END)
    b.curl_download(server, b.download_params(token, random, "all", START, END), out)


def measure(rows: int, repeat: int, database: str | None = None) -> tuple[float, float]:
    """Seeded SQLite file of ``rows`` rows, or ``database`` (PostgreSQL, psql reference)."""
    if database:
        database_url, shell_name = database, "psql COPY ... CSV"
        reference: Callable[[Path], None] = lambda out: psql_export(database, out)  # noqa: E731
    else:
        db = b.seeded_db(rows)
        database_url, shell_name = b.url(db), "sqlite3 -csv shell"
        reference = lambda out: shell_export(db, out)  # noqa: E731
    tag = os.getpid()  # two benches may run at once (SQLite and PostgreSQL)
    shell_out, server_out = b.DATA / f"export-shell-{tag}.csv", b.DATA / f"export-server-{tag}.csv"
    with b.serve(database_url) as server:
        with server.client() as client:
            token = b.login(client, server)
        shell_times: list[float] = []
        server_times: list[float] = []
        server_cpu: list[float] = []
        pid = server.served.process.pid
        for _ in range(repeat):  # interleaved, so load changes hit both sides alike
            shell_times += b.timed(lambda: reference(shell_out), 1)
            used = b.cpu_seconds(pid)
            server_times += b.timed(lambda: server_export(server, token, server_out), 1)
            server_cpu.append(b.cpu_seconds(pid) - used)
        rss = server.peak_rss_mb()
    same = same_rows(shell_out, server_out)
    size = server_out.stat().st_size / 1e6
    b.say(
        f"{database_url.split('://')[0]}: {size:.0f} MB of CSV, same rows in the same order: {same}"
    )
    ratio = b.report("cdrgate HTTP download", server_times, shell_name, shell_times)
    cpu = ", ".join(f"{used:.2f}" for used in server_cpu)
    load = ", ".join(f"{avg:.2f}" for avg in os.getloadavg())
    b.say(f"  server CPU per export (s): {cpu}; load average now {load}")
    b.say(f"  server peak RSS after {repeat} full exports: {rss:.0f} MB")
    shell_out.unlink()
    server_out.unlink()
    if not same:
        raise SystemExit("the server's CSV differs from the shell's")
    return ratio, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big", type=int, default=5_000_000, help="second size, for RSS")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database", help="PostgreSQL URL (already seeded): time vs psql")
    args = parser.parse_args()
    b.say(f"== export_full | {b.machine()}")
    if args.database:
        ratio, rss = measure(0, args.repeat, args.database)
        b.say(f"RESULT export_full (PostgreSQL): {ratio:.2f}x psql COPY; peak RSS {rss:.0f} MB")
        return
    ratio, rss = measure(args.rows, args.repeat)
    _, rss_big = measure(args.big, 1)
    b.say(
        f"RESULT export_full: {ratio:.2f}x the sqlite3 shell (target <= 0.35x); peak RSS "
        f"{rss:.0f} MB at {args.rows} rows, {rss_big:.0f} MB at {args.big} rows "
        f"({(rss_big / rss - 1) * 100:+.0f}%; target < 150 MB, within 10%)"
    )


if __name__ == "__main__":
    main()
