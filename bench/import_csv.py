"""Target 4: `cdrgate import` of a Yeastar CSV vs the sqlite3 shell's `.import` of the same file.

    .venv/bin/python bench/import_csv.py [--rows 1000000] [--repeat 3] [--baseline CDRGATE]

The file is the seeded store written out as a Yeastar CDR CSV (header + rows, download order).
Reference, same run, interleaved: `sqlite3 plain.db` + `.import --csv --skip 1` into a plain
14-column TEXT table without indexes. cdrgate imports into an empty migrated database (copied
from a template, so migrations are not timed); both sides are timed as whole processes.
``--baseline`` also times another build's `cdrgate` (e.g. main's .venv/bin/cdrgate), interleaved,
into its own migrated template: the cost of a change to the insert path.
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess

import benchlib as b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", help="another cdrgate executable to time the same way")
    args = parser.parse_args()
    b.say(f"== import_csv | {b.machine()}")
    csv_file = b.yeastar_csv(b.seeded_db(args.rows))
    plain, target = b.DATA / "import-plain.db", b.DATA / "import-cdrgate.db"
    shell_times: list[float] = []
    import_times: list[float] = []
    baseline_times: list[float] = []
    for _ in range(args.repeat):
        shell_times += b.timed(lambda: b.shell_import(csv_file, plain), 1)
        if args.baseline:
            url = b.migrated_copy(target, args.baseline)
            command = [args.baseline, "import", str(csv_file), "--database", url]
            baseline_times += b.timed(lambda: b.run(command, stdout=subprocess.DEVNULL), 1)  # noqa: B023
        database_url = b.migrated_copy(target)
        command = [b.CDRGATE, "import", str(csv_file), "--database", database_url]
        import_times += b.timed(lambda: b.run(command, stdout=subprocess.DEVNULL), 1)  # noqa: B023
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
