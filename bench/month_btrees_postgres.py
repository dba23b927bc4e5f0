"""What each of a month's B-trees costs the server when an import into an empty PostgreSQL
store builds it (ingest/yeastar_pg_empty.py), and what the same B-trees cost when the load
maintains them instead:

    .venv/bin/python bench/month_btrees_postgres.py DATABASE_URL [--rounds 3]

DATABASE_URL names a store holding month partitions (e.g. the 1M-row file imported by
`cdrgate import`); nothing of it is changed. Per round and per B-tree (as cdr's partitions
have them, and the import's cdr_summary counts, a ``CREATE TABLE AS``), each month is copied
into an unindexed table and the statement is run on it, no parallel workers, the import's
``maintenance_work_mem``; printed: the backend's own CPU (user+sys, from /proc: the server
must run on this machine) summed over the months. Then per round: each month loaded
(``INSERT ... SELECT``, the heap writes COPY also does) into a table without indexes and the
six built after, against the six made first and maintained by the load, and against only
the two append-only keys (id, ts) and (ts, callid, sn) maintained. Bounded: ~50 s a round
for a 1M-row store at load 5 (1m44s for --rounds 2).
"""

from __future__ import annotations

import argparse
import os

import psycopg

HZ = os.sysconf("SC_CLK_TCK")
SCRATCH = "bench_month_btrees"
BTREES = {
    "PRIMARY KEY (id, ts)": f"ALTER TABLE {SCRATCH} ADD PRIMARY KEY (id, ts)",
    "UNIQUE (ts, callid, sn)": f"ALTER TABLE {SCRATCH} ADD UNIQUE (ts, callid, sn)",
    "(callfrom, ts)": f"CREATE INDEX ON {SCRATCH} (callfrom, ts)",
    "(callto, ts)": f"CREATE INDEX ON {SCRATCH} (callto, ts)",
    "(recording) WHERE <> ''": f"CREATE INDEX ON {SCRATCH} (recording) WHERE recording <> ''",
    "(sn)": f"CREATE INDEX ON {SCRATCH} (sn)",
}
COUNTS = (
    f"CREATE TABLE {SCRATCH}_counts AS SELECT ts / 3600 * 3600 AS hour, status, type, "
    "count(*) AS calls, sum(talkduraction) AS talk, sum(callduraction) AS duration "
    f"FROM {SCRATCH} GROUP BY 1, 2, 3"
)
KEYS = list(BTREES.values())[:2]


def backend_cpu(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def load() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


class Months:
    def __init__(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        self.conn = conn
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        self.pid = int(str(row[0]))
        self.names = [
            str(name)
            for (name,) in conn.execute(
                "SELECT relname FROM pg_class WHERE relname ~ '^cdr_p[0-9]{6}$' ORDER BY 1"
            )
        ]
        conn.execute("SET maintenance_work_mem = '256MB'")
        conn.execute("SET max_parallel_maintenance_workers = 0")

    def timed(self, statements: list[str]) -> float:
        before = backend_cpu(self.pid)
        for statement in statements:
            self.conn.execute(statement)  # type: ignore[arg-type]
        return backend_cpu(self.pid) - before

    def fresh(self, month: str, copy: bool) -> None:
        self.conn.execute(f"DROP TABLE IF EXISTS {SCRATCH}, {SCRATCH}_counts")  # type: ignore[arg-type]
        if copy:
            self.conn.execute(f"CREATE TABLE {SCRATCH} AS SELECT * FROM {month}")  # type: ignore[arg-type]
            # Hint bits set before the timed statement, as the import's first scan does.
            self.conn.execute(f"SELECT count(*) FROM {SCRATCH}")  # type: ignore[arg-type]
        else:
            self.conn.execute(
                f"CREATE TABLE {SCRATCH} (LIKE {month} INCLUDING DEFAULTS) "  # type: ignore[arg-type]
                "WITH (autovacuum_enabled = false)"
            )

    def each_btree(self, statement: str) -> float:
        total = 0.0
        for month in self.names:
            self.fresh(month, copy=True)
            total += self.timed([statement])
        return total

    def loaded(self, first: list[str], after: list[str]) -> tuple[float, float]:
        """The months loaded with ``first`` made before, ``after`` built after: CPU of the
        loads (a scan after each, as an import's first read), of the builds."""
        loads = builds = 0.0
        for month in self.names:
            self.fresh(month, copy=False)
            self.timed(first)
            loads += self.timed(
                [
                    f"INSERT INTO {SCRATCH} SELECT * FROM {month} ORDER BY id",
                    f"SELECT count(*) FROM {SCRATCH}",
                ]
            )
            builds += self.timed(after)
        return loads, builds

    def drop(self) -> None:
        self.conn.execute(f"DROP TABLE IF EXISTS {SCRATCH}, {SCRATCH}_counts")  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with psycopg.connect(args.url, autocommit=True) as conn:
        months = Months(conn)
        try:
            print(f"{len(months.names)} months; load {load()}")
            figures: dict[str, list[float]] = {name: [] for name in [*BTREES, "counts"]}
            for _ in range(args.rounds):
                for name, statement in BTREES.items():
                    figures[name].append(months.each_btree(statement))
                figures["counts"].append(months.each_btree(COUNTS))
            for name, values in figures.items():
                print(f"  {name:26s} " + " / ".join(f"{value:.2f}" for value in values) + " s")
            sums = [sum(figures[name][i] for name in BTREES) for i in range(args.rounds)]
            print(
                f"  {'the six B-trees':26s} " + " / ".join(f"{value:.2f}" for value in sums) + " s"
            )
            every = list(BTREES.values())
            for number in range(args.rounds):
                for label, first, after in (
                    ("built after the load", [], every),
                    ("maintained by the load", every, []),
                    ("keys maintained, 4 after", KEYS, every[2:]),
                ):
                    loads, builds = months.loaded(first, after)
                    print(
                        f"round {number + 1} {label:26s} load {loads:.2f} + builds {builds:.2f}"
                        f" = {loads + builds:.2f} s  (load {load()})"
                    )
        finally:
            months.drop()


if __name__ == "__main__":
    main()
