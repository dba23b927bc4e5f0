"""Target 5: `cdrgate seed --count 1000000` wall time (target: under 10 s).

    .venv/bin/python bench/seed_rows.py [--rows 1000000] [--repeat 3]

Each run seeds an empty migrated database (copied from a template, so migrations are not
timed) as a whole `cdrgate seed` process. Reference, same run, interleaved, as a yardstick of
this machine's speed at that moment: the sqlite3 shell's `.import` of the same rows as CSV
into a plain table without indexes.
"""

from __future__ import annotations

import argparse
import subprocess

import benchlib as b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    b.say(f"== seed_rows | {b.machine()}")
    csv_file = b.yeastar_csv(b.seeded_db(args.rows))
    plain, target = b.DATA / "seed-plain.db", b.DATA / "seed-bench.db"
    shell_times: list[float] = []
    seed_times: list[float] = []
    for _ in range(args.repeat):
        shell_times += b.timed(lambda: b.shell_import(csv_file, plain), 1)
        database_url = b.migrated_copy(target)
        command = [b.CDRGATE, "seed", "--count", str(args.rows), "--database", database_url]
        seed_times += b.timed(lambda: b.run(command, stdout=subprocess.DEVNULL), 1)  # noqa: B023
    ratio = b.report("cdrgate seed", seed_times, "sqlite3 .import (plain table)", shell_times)
    b.fresh(plain)
    b.fresh(target)
    b.say(
        f"RESULT seed_rows: {args.rows} rows in {min(seed_times):.1f} s min "
        f"(target < 10 s); {ratio:.1f}x the shell's plain .import of the same rows"
    )


if __name__ == "__main__":
    main()
