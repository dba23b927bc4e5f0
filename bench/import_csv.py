"""Target 4: `cdrgate import` of a Yeastar CSV vs the sqlite3 shell's `.import` of the same file.

    .venv/bin/python bench/import_csv.py [--rows 1000000] [--repeat 3] [--baseline CDRGATE]
        [--into STORE.db | --new-store]

The file is the seeded store written out as a Yeastar CDR CSV (header + rows, download order).
Reference, same run, interleaved: `sqlite3 plain.db` + `.import --csv --skip 1` into a plain
14-column TEXT table without indexes. cdrgate imports into an empty migrated database (copied
from a template, so migrations are not timed); both sides are timed as whole processes.
``--baseline`` also times another build's `cdrgate` (e.g. main's .venv/bin/cdrgate), interleaved,
into its own migrated template: the cost of a change to the insert path. ``--into`` imports
into a copy of that store instead (e.g. one seeded with 5M rows under another serial number,
so every row is new; the copy is not timed). ``--new-store`` names a file that does not exist
yet instead, so making the store is timed too, as a user's first import pays it. Each run prints its wall time, its CPU seconds
(user + sys, which the neighbours on a shared machine move much less) and the load average.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import benchlib as b


def _timed_run(label: str, func: Callable[[], object]) -> float:
    b.settle_disk()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    func()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    load = os.getloadavg()[0]
    b.say(f"  {label:<34} {wall:7.2f} s wall {cpu:7.2f} s cpu   load {load:.2f}")
    return wall


def _target(target: Path, into: Path | None, cdrgate: str, new_store: bool = False) -> str:
    if new_store:
        b.fresh(target)
        return b.url(target)
    if into is None:
        return b.migrated_copy(target, cdrgate)
    b.fresh(target)
    shutil.copyfile(into, target)
    return b.url(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", help="another cdrgate executable to time the same way")
    parser.add_argument("--into", type=Path, help="import into a copy of this store")
    parser.add_argument(
        "--new-store", action="store_true", help="import into a store the import makes (timed)"
    )
    args = parser.parse_args()
    if args.into and args.new_store:
        parser.error("--into and --new-store exclude each other")
    b.say(f"== import_csv | {b.machine()}")
    csv_file = b.yeastar_csv(b.seeded_db(args.rows))
    plain, target = b.DATA / "import-plain.db", b.DATA / "import-cdrgate.db"
    shell_times: list[float] = []
    import_times: list[float] = []
    baseline_times: list[float] = []
    for _ in range(args.repeat):
        shell_times.append(_timed_run("sqlite3 .import", lambda: b.shell_import(csv_file, plain)))
        if args.baseline:
            url = _target(target, args.into, args.baseline, args.new_store)
            command = [args.baseline, "import", str(csv_file), "--database", url]
            baseline_times.append(
                _timed_run("baseline import", lambda: b.run(command, stdout=subprocess.DEVNULL))  # noqa: B023
            )
        database_url = _target(target, args.into, b.CDRGATE, args.new_store)
        command = [b.CDRGATE, "import", str(csv_file), "--database", database_url]
        import_times.append(
            _timed_run("cdrgate import", lambda: b.run(command, stdout=subprocess.DEVNULL))  # noqa: B023
        )
    with sqlite3.connect(target) as conn:
        stored = conn.execute("SELECT count(*) FROM cdr").fetchone()[0]
    b.say(f"{args.rows} rows in {csv_file.stat().st_size / 1e6:.0f} MB; cdrgate stored {stored}")
    ratio = b.report("cdrgate import", import_times, "sqlite3 .import (plain table)", shell_times)
    if args.baseline:
        b.report("cdrgate import", import_times, f"baseline {args.baseline}", baseline_times)
    b.fresh(plain)
    b.fresh(target)
    b.say(f"RESULT import_csv: {ratio:.2f}x the sqlite3 shell's .import (target <= 2.0x)")


if __name__ == "__main__":
    main()
