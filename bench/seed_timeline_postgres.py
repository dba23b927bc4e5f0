"""Where one PostgreSQL seed's time goes: each backend's statements on a timeline.

    scripts/with-postgres.sh .venv/bin/python bench/seed_timeline_postgres.py \
        --cdrgate .venv/bin/cdrgate --rows 1000000 [--log /path/to/server.log]

Seeds ``--rows`` into a fresh, migrated database with ``log_min_duration_statement = 0`` on
it, samples the server's backends' CPU (``/proc/<pid>/stat``) meanwhile, then reads the
statements' durations from the server log (``%m [%p]`` prefix: PostgreSQL's default) and
prints, per backend, each statement's start and end (seconds from the client's start), what
it was, and its CPU; then how long one, both or no helper was busy. The log is the cluster's
``server.log`` (``scripts/with-postgres.sh`` writes it in the data directory; readable by its
owner or root). Bounded: the seed is killed after ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import resource
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path

_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) \w+ \[(\d+)\] LOG:  duration: ([\d.]+) ms  "
    r"(?:statement|execute [^:]*): (.*)$"
)
_KINDS = (  # first match wins: (pattern in the statement, label)
    ("pg_advisory_xact_lock", "lock"),
    ("setval(", "ids"),
    ("nextval(", "ids"),
    ("INSERT INTO cdr_summary", "count"),
    ("SELECT ts / 3600", "count"),
    ("ATTACH PARTITION", "attach"),
    ("RENAME", "rename"),
    ("DROP CONSTRAINT", "rename"),
    ("CREATE TABLE cdr_seed", "create"),
    ("INSERT INTO seed_slot", "stage"),
    ("CREATE TEMP TABLE seed_slot", "stage"),
    ("DROP TABLE seed_slot", "stage"),
    ("SELECT seq, j", "rows"),
    ("INSERT INTO cdr_seed", "rows"),
    ("ADD PRIMARY KEY", "index"),
    ("ADD UNIQUE", "index"),
    ("CREATE INDEX", "index"),
    ("COMMIT", "commit"),
)


def kind(statement: str) -> str:
    for needle, label in _KINDS:
        if needle in statement:
            return label
    return "other"


def sample_cpu(postmaster: int, stop: threading.Event, cpu: dict[int, float]) -> None:
    """The CPU seconds of each child of ``postmaster``, last seen, every 20 ms."""
    hz = os.sysconf("SC_CLK_TCK")
    while not stop.is_set():
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == postmaster:
                cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / hz
        stop.wait(0.02)


def psql(url: str, sql: str) -> str:
    out = subprocess.run(["psql", url, "-qAtX", "-c", sql], check=True, capture_output=True)
    return out.stdout.decode().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cdrgate", default=".venv/bin/cdrgate")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--log", help="the cluster's server log (default: its data directory's)")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--statements", action="store_true", help="print every statement")
    args = parser.parse_args()
    url = os.environ["CDRGATE_TEST_POSTGRES"]
    base = url.rsplit("/", 1)[0]
    log = Path(args.log or Path(psql(url, "SHOW data_directory")) / "server.log")
    checkpointer = psql(url, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")
    postmaster = int(Path(f"/proc/{checkpointer}/stat").read_text().rsplit(")", 1)[1].split()[1])
    psql(url, "DROP DATABASE IF EXISTS bench_timeline")
    psql(url, "CREATE DATABASE bench_timeline")
    db = f"{base}/bench_timeline"
    subprocess.run(
        [args.cdrgate, "db", "upgrade", "--database", db], check=True, capture_output=True
    )
    psql(url, "ALTER DATABASE bench_timeline SET log_min_duration_statement = 0")
    time.sleep(1)
    offset = log.stat().st_size
    cpu: dict[int, float] = {}
    stop = threading.Event()
    sampler = threading.Thread(target=sample_cpu, args=(postmaster, stop, cpu))
    sampler.start()
    load = Path("/proc/loadavg").read_text().split()[:3]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    child = subprocess.Popen(
        [args.cdrgate, "seed", "--count", str(args.rows), "--database", db],
        stdout=subprocess.DEVNULL,
    )
    try:
        child.wait(args.timeout)
    finally:
        child.kill()
    wall = time.time() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    time.sleep(0.5)
    stop.set()
    sampler.join()
    with log.open() as f:
        f.seek(offset)
        lines = f.read().splitlines()
    psql(url, "DROP DATABASE bench_timeline")
    report(lines, started, cpu, wall, client, load, args.statements)


def report(
    lines: list[str],
    started: float,
    cpu: dict[int, float],
    wall: float,
    client: float,
    load: list[str],
    every: bool,
) -> None:
    by_pid: dict[int, list[tuple[float, float, str]]] = defaultdict(list)
    for line in lines:
        found = _LINE.match(line)
        if not found:
            continue
        stamp, pid, ms, statement = found.groups()
        end = datetime.datetime.strptime(stamp + " +0000", "%Y-%m-%d %H:%M:%S.%f %z").timestamp()
        end -= started
        by_pid[int(pid)].append((end - float(ms) / 1000, end, kind(statement)))
    print(
        f"wall {wall:.2f} s  client cpu {client:.2f} s  "
        f"server cpu (backends seen) {sum(cpu.values()):.2f} s  load {' '.join(load)}"
    )
    helpers = []
    for pid, statements in sorted(by_pid.items(), key=lambda item: item[1][0][0]):
        per_kind: dict[str, float] = defaultdict(float)
        for start, end, label in statements:
            per_kind[label] += end - start
        first, last = statements[0][0], statements[-1][1]
        print(
            f"backend {pid}: {first:6.2f}-{last:6.2f} s, busy {sum(per_kind.values()):.2f} s, "
            f"cpu {cpu.get(pid, 0):.2f} s: "
            + ", ".join(f"{label} {s:.2f}" for label, s in sorted(per_kind.items()))
        )
        if any(label == "rows" for _, _, label in statements):
            helpers.append(statements)
        if every:
            previous = (first, first, "")
            for start, end, label in statements:
                if end - start >= 0.01 or start - previous[1] >= 0.02:
                    gap = start - previous[1]
                    print(f"    {start:6.2f}-{end:6.2f} {label:7} (after {gap:.3f} s idle)")
                previous = (start, end, label)
    if helpers:
        overlap(helpers)
        first = min(statements[0][0] for statements in by_pid.values())
        last = max(statements[-1][1] for statements in by_pid.values())
        helpers_end = max(statements[-1][1] for statements in helpers)
        print(
            f"first statement at {first:.2f} s; after the helpers' last, {last - helpers_end:.2f} s "
            f"of the seed's own; the client's end {wall - last:.2f} s after the last statement"
        )


def overlap(helpers: list[list[tuple[float, float, str]]]) -> None:
    """How long 0, 1, 2 ... helpers were inside a statement, from the first helper's start to
    the last one's end."""
    events = sorted(
        (t, step)
        for statements in helpers
        for s, e in merged(statements)
        for t, step in ((s, 1), (e, -1))
    )
    busy: dict[int, float] = defaultdict(float)
    level, last = 0, events[0][0]
    for t, step in events:
        busy[level] += t - last
        level, last = level + step, t
    ends = sorted(statements[-1][1] for statements in helpers)
    print(
        "helpers busy: "
        + ", ".join(f"{n} for {s:.2f} s" for n, s in sorted(busy.items()) if s >= 0.005)
        + f"; last ends {', '.join(f'{e:.2f}' for e in ends)} s"
    )


def merged(statements: list[tuple[float, float, str]]) -> list[tuple[float, float]]:
    """A backend's busy intervals: its statements, those that touch (the log's millisecond
    stamps may make one start before the previous ends) merged."""
    intervals: list[tuple[float, float]] = []
    for start, end, _ in statements:
        if intervals and start <= intervals[-1][1]:
            intervals[-1] = (intervals[-1][0], max(end, intervals[-1][1]))
        else:
            intervals.append((start, end))
    return intervals


if __name__ == "__main__":
    main()
