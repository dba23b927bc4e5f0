"""Issue 17 item 3: `cdrgate seed --count 1000000` wall time (target: at most 10 s).

    .venv/bin/python bench/seed_rows.py [--rows 1000000] [--repeat 3] [--baseline CDRGATE]

Each run seeds an empty migrated database (copied from a template, so migrations are not
timed) as a whole `cdrgate seed` process. Reference, same run, interleaved, as a yardstick of
this machine's speed at that moment: the sqlite3 shell's `.import` of the same rows as CSV
into a plain table without indexes. ``--baseline`` also times another build's `cdrgate` (e.g.
main's .venv/bin/cdrgate), interleaved, into its own migrated template. The load average is
printed before each run, and each run's CPU seconds (user + sys, both threads) after it: on a
shared machine the neighbours move the CPU time much less than the wall time.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess

import benchlib as b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", help="another cdrgate executable to time the same way")
    args = parser.parse_args()
    b.say(f"== seed_rows | {b.machine()}")
    csv_file = b.yeastar_csv(b.seeded_db(args.rows))
    plain, target = b.DATA / "seed-plain.db", b.DATA / "seed-bench.db"
    shell_times: list[float] = []
    seed_times: list[float] = []
    baseline_times: list[float] = []
    cpu: dict[str, list[float]] = {}
    builds = [(args.baseline, baseline_times)] if args.baseline else []
    builds.append((b.CDRGATE, seed_times))
    for _ in range(args.repeat):
        shell_times += b.timed(lambda: b.shell_import(csv_file, plain), 1)
        for cdrgate, times in builds:
            database_url = b.migrated_copy(target, cdrgate)
            command = [cdrgate, "seed", "--count", str(args.rows), "--database", database_url]
            load = " ".join(f"{value:.2f}" for value in os.getloadavg())
            before = _children_cpu()
            times += b.timed(lambda: b.run(command, stdout=subprocess.DEVNULL), 1)  # noqa: B023
            cpu.setdefault(cdrgate, []).append(_children_cpu() - before)
            b.say(
                f"  load average {load}: {cdrgate} seed {times[-1]:.2f} s, "
                f"cpu {cpu[cdrgate][-1]:.2f} s"
            )
    ratio = b.report("cdrgate seed", seed_times, "sqlite3 .import (plain table)", shell_times)
    if args.baseline:
        b.report("cdrgate seed", seed_times, f"baseline {args.baseline}", baseline_times)
    for cdrgate, seconds in cpu.items():
        b.say(f"  cpu (user+sys) {cdrgate}: min {min(seconds):.2f} s, runs {_listed(seconds)}")
    b.fresh(plain)
    b.fresh(target)
    b.say(
        f"RESULT seed_rows: {args.rows} rows in {min(seed_times):.1f} s min "
        f"(target < 10 s); {ratio:.1f}x the shell's plain .import of the same rows"
    )


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _listed(values: list[float]) -> str:
    return " / ".join(f"{value:.2f}" for value in values)


if __name__ == "__main__":
    main()
