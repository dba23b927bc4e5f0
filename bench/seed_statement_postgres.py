"""The seed's row-making statement alone on PostgreSQL: its backend's CPU and wall seconds.

    PYTHONPATH=<a build's src> .venv/bin/python bench/seed_statement_postgres.py \\
        --database postgresql://.../db [--rows 1000000]

One ``INSERT INTO <plain table> SELECT`` of ``storage/seeded.py``'s rows for the whole plan
(the seed itself runs it per chunk of hours, into the months' tables), in a transaction rolled
back at the end: no index build, no cdr_summary, no start-up. The table is a logged one with
``cdr``'s columns, as a month loaded apart is. The CPU is the backend's (``/proc/<pid>/stat``,
the cluster on this machine), which the neighbours move less than the wall. Run two builds
interleaved through ``PYTHONPATH`` (bench/RESULTS.md, eighteenth round). The database must be
migrated (``cdrgate db upgrade``).
"""

from __future__ import annotations

import argparse
import time

import benchlib as b
from sqlalchemy import create_engine, text

from cdrgate.seed import SeedPlan, slots
from cdrgate.storage import seeded
from cdrgate.storage.cdrs import COLUMNS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True, help="postgresql://... (migrated)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    url = args.database.replace("postgresql://", "postgresql+psycopg://", 1)
    plan = SeedPlan(count=args.rows)
    hours = slots(plan)
    names = ", ".join(COLUMNS)
    engine = create_engine(url)
    with engine.connect() as conn:
        pid = int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
        seeded.stage_hours(conn, hours)
        conn.exec_driver_sql("CREATE TABLE seed_statement (LIKE cdr INCLUDING DEFAULTS)")
        sql = (
            f"INSERT INTO seed_statement ({names}) SELECT {names} "
            f"FROM ({seeded.rows_sql('postgresql', plan)}) AS seeded"
        )
        params = seeded.bind_params(plan, hours[0].first_seq, hours[-1].first_seq)
        load = b.load_average()
        cpu, wall = b.cpu_seconds(pid), time.monotonic()
        conn.execute(text(sql), params)
        cpu, wall = b.cpu_seconds(pid) - cpu, time.monotonic() - wall
        conn.rollback()
    engine.dispose()
    print(
        f"seed statement {args.rows} rows: wall {wall:.2f} s  backend cpu {cpu:.2f} s  load {load}"
    )


if __name__ == "__main__":
    main()
