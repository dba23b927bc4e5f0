"""`cdrgate stats` on a big store, this build against another, interleaved.

    .venv/bin/python bench/store_stats.py --database sqlite:///bench/data/seed-1000000-1.db \
        --base /tmp/base-NAME/src [--runs 5]

Each run is one `cdrgate stats` process (this build, then the one under ``--base`` through
PYTHONPATH, same interpreter and store); the figure is its CPU seconds (user+sys, which the
neighbours on a shared machine move much less than wall time), beside its wall time and the
load average when it started. The store is only read, so the builds see the same pages.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time


def one_run(database: str, pythonpath: str | None) -> tuple[float, float]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    else:
        env.pop("PYTHONPATH", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "cdrgate", "stats", "--json", "--database", database],
        env=env, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", required=True)
    parser.add_argument("--base", required=True, help="the other build's src directory")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    builds = {"this": None, "base": args.base}
    cpu: dict[str, list[float]] = {name: [] for name in builds}
    one_run(args.database, None)  # warm the page cache for both
    for run in range(args.runs):
        for name, path in builds.items():
            load = os.getloadavg()[0]
            wall, used = one_run(args.database, path)
            cpu[name].append(used)
            print(f"run {run + 1} {name:4s} cpu {used:5.2f} s  wall {wall:5.2f} s  load {load:.2f}")
    for name, values in cpu.items():
        print(f"{name}: cpu min {min(values):.2f} median {statistics.median(values):.2f} s")
    print(
        f"RESULT store_stats: {statistics.median(cpu['this']) / statistics.median(cpu['base']):.2f}x"
    )


if __name__ == "__main__":
    main()
