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

With ``--designs``, instead: per round, the designs of the two extension B-trees
(``DESIGNS``: integer hashes, coded ids, one GIN, a side table, hash indexes, and a bound)
built the same way, both sides' statements timed together; then what coding the numbers
would cost a load (``CODING``) and the dictionary's upkeep by an import. Bounded: ~55 s a
round at load 3 (2m47s for --rounds 3). ``bench/extension_reads_postgres.py`` measures the
designs' reads.
"""

from __future__ import annotations

import argparse

import benchlib as b
import psycopg

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

# Designs that keep the some-extensions reads indexed with cheaper builds than the text pair
# (twenty-fifth round): each the statements that build both sides for one month, timed as a
# B-tree above. ``coded`` copies the month with its extensions' integer ids (a dictionary of
# every number in the store, made once, untimed: what the import would have to keep), so only
# its builds are timed here; ``CODING`` below is what the coding costs a load.
HASH8 = "hashtextextended({side}, 0)"
DESIGNS: dict[str, list[str]] = {
    "text (callfrom, ts), (callto, ts)": [BTREES["(callfrom, ts)"], BTREES["(callto, ts)"]],
    "hash8 (hashtextextended(side, 0), ts)": [
        f"CREATE INDEX ON {SCRATCH} (({HASH8.format(side=side)}), ts)"
        for side in ("callfrom", "callto")
    ],
    "hash4 (hashtext(side), ts)": [
        f"CREATE INDEX ON {SCRATCH} ((hashtext({side})), ts)" for side in ("callfrom", "callto")
    ],
    "hash4 by day (hashtext(side), ts / 86400)": [
        f"CREATE INDEX ON {SCRATCH} ((hashtext({side})), ((ts / 86400)::int))"
        for side in ("callfrom", "callto")
    ],
    "coded (side_id int4, ts)": [
        f"CREATE INDEX ON {SCRATCH} ({side}_id, ts)" for side in ("callfrom", "callto")
    ],
    "one B-tree, side table (hash8, ts, id)": [
        f"CREATE TABLE {SCRATCH}_side AS "
        f"SELECT {HASH8.format(side='callfrom')} AS ext, ts, id FROM {SCRATCH} UNION ALL "
        f"SELECT {HASH8.format(side='callto')}, ts, id FROM {SCRATCH}",
        f"CREATE INDEX ON {SCRATCH}_side (ext, ts)",
    ],
    "one GIN, ARRAY[hashtext(callfrom), hashtext(callto)]": [
        f"CREATE INDEX ON {SCRATCH} USING gin ((ARRAY[hashtext(callfrom), hashtext(callto)]))"
    ],
    "hash index USING hash (side)": [
        f"CREATE INDEX ON {SCRATCH} USING hash ({side})" for side in ("callfrom", "callto")
    ],
    # A bound, not a design: two B-trees of the cheapest key there is (the heap's own order,
    # nothing to reorder), what any design of two 1M-entry B-trees costs at least.
    "floor: (id) twice": [f"CREATE INDEX ON {SCRATCH} (id)"] * 2,
}
# Without B-tree deduplication: a build then neither compares each entry with the one before
# nor copies it as a posting list's first (CopyIndexTuple and _bt_keep_natts_fast were ~15 %
# and ~7 % of a build's samples under perf), and near-unique keys have nothing to merge.
NO_DEDUP = " WITH (deduplicate_items = off)"
DESIGNS |= {
    f"{name}, dedup off": [statement + NO_DEDUP for statement in DESIGNS[name]]
    for name in (
        "text (callfrom, ts), (callto, ts)",
        "hash4 (hashtext(side), ts)",
        "floor: (id) twice",
    )
}
IDS = "bench_month_btrees_ids"
# A month coded against the dictionary (the import would join its rows to it, or the client
# would look each number up), against the same month copied as it is.
CODING = {
    "plain": f"INSERT INTO {SCRATCH} SELECT m.*, 0, 0 FROM {{month}} m",
    "coded": (
        f"INSERT INTO {SCRATCH} SELECT m.*, f.id, t.id FROM {{month}} m "
        f"JOIN {IDS} f ON f.ext = m.callfrom JOIN {IDS} t ON t.ext = m.callto"
    ),
}


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
        before = b.cpu_seconds(self.pid)
        for statement in statements:
            self.conn.execute(statement)  # type: ignore[arg-type]
        return b.cpu_seconds(self.pid) - before

    def fresh(self, month: str, copy: bool, coded: bool = False) -> None:
        self.drop()
        if copy and coded:
            self.conn.execute(
                f"CREATE TABLE {SCRATCH} AS SELECT m.*, f.id AS callfrom_id, t.id AS callto_id "  # type: ignore[arg-type]
                f"FROM {month} m JOIN {IDS} f ON f.ext = m.callfrom "
                f"JOIN {IDS} t ON t.ext = m.callto ORDER BY m.id"
            )
            self.conn.execute(f"SELECT count(*) FROM {SCRATCH}")  # type: ignore[arg-type]
        elif copy:
            self.conn.execute(f"CREATE TABLE {SCRATCH} AS SELECT * FROM {month}")  # type: ignore[arg-type]
            # Hint bits set before the timed statement, as the import's first scan does.
            self.conn.execute(f"SELECT count(*) FROM {SCRATCH}")  # type: ignore[arg-type]
        else:
            self.conn.execute(
                f"CREATE TABLE {SCRATCH} (LIKE {month} INCLUDING DEFAULTS) "  # type: ignore[arg-type]
                "WITH (autovacuum_enabled = false)"
            )

    def each_btree(self, statement: str) -> float:
        return self.each_design([statement])

    def each_design(self, statements: list[str], coded: bool = False) -> float:
        total = 0.0
        for month in self.names:
            self.fresh(month, copy=True, coded=coded)
            total += self.timed(statements)
        return total

    def dictionary(self) -> None:
        """Every number of the store (callers and callees) with an integer id: what the
        coded design's import would keep up to date."""
        self.conn.execute(f"DROP TABLE IF EXISTS {IDS}")  # type: ignore[arg-type]
        self.conn.execute(
            f"CREATE TABLE {IDS} AS SELECT ext, (row_number() OVER ())::int AS id "  # type: ignore[arg-type]
            "FROM (SELECT callfrom AS ext FROM cdr UNION SELECT callto FROM cdr) AS numbers"
        )
        self.conn.execute(f"ALTER TABLE {IDS} ADD PRIMARY KEY (ext)")  # type: ignore[arg-type]
        self.conn.execute(f"ANALYZE {IDS}")  # type: ignore[arg-type]

    def coding(self, statement: str) -> float:
        """CPU of loading the months through ``statement`` into an unindexed table with the
        two id columns."""
        total = 0.0
        for month in self.names:
            self.drop()
            self.conn.execute(
                f"CREATE TABLE {SCRATCH} (LIKE {month} INCLUDING DEFAULTS, "  # type: ignore[arg-type]
                "callfrom_id int NOT NULL, callto_id int NOT NULL) "
                "WITH (autovacuum_enabled = false)"
            )
            total += self.timed([statement.format(month=month)])
        return total

    def dictionary_upkeep(self) -> float:
        """CPU of the dictionary's upkeep by an import into an empty store: each month's
        new numbers inserted into it (its text B-tree maintained)."""
        self.conn.execute(f"TRUNCATE {IDS}")  # type: ignore[arg-type]
        total = 0.0
        for month in self.names:
            total += self.timed(
                [
                    f"INSERT INTO {IDS} SELECT ext, (row_number() OVER ())::int FROM "
                    f"(SELECT callfrom AS ext FROM {month} UNION SELECT callto FROM {month}) "
                    "AS numbers ON CONFLICT DO NOTHING"
                ]
            )
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
        self.conn.execute(
            f"DROP TABLE IF EXISTS {SCRATCH}, {SCRATCH}_counts, {SCRATCH}_side"  # type: ignore[arg-type]
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--designs",
        action="store_true",
        help="time DESIGNS (the extension B-trees' alternatives) and the coding instead",
    )
    parser.add_argument(
        "--only", default="", help="with --designs: comma-separated prefixes of design names"
    )
    args = parser.parse_args()
    with psycopg.connect(args.url, autocommit=True) as conn:
        months = Months(conn)
        if args.designs:
            try:
                designs(months, args.rounds, [p for p in args.only.split(",") if p])
            finally:
                months.drop()
                conn.execute(f"DROP TABLE IF EXISTS {IDS}")  # type: ignore[arg-type]
            return
        try:
            print(f"{len(months.names)} months; load {b.load_average()}")
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
                        f" = {loads + builds:.2f} s  (load {b.load_average()})"
                    )
        finally:
            months.drop()


def designs(months: Months, rounds: int, only: list[str]) -> None:
    """Each design's builds per round, interleaved; then the coded design's load costs.
    ``only``: the designs whose names start with one of these (all when empty; the coding's
    costs only with the coded design)."""
    print(f"{len(months.names)} months; load {b.load_average()}")
    chosen = {
        name: statements
        for name, statements in DESIGNS.items()
        if not only or any(name.startswith(prefix) for prefix in only)
    }
    coded = any(name.startswith("coded") for name in chosen)
    if coded:
        months.dictionary()
    figures: dict[str, list[float]] = {name: [] for name in chosen}
    costs = [*CODING, "dictionary upkeep"] if coded else []
    coding: dict[str, list[float]] = {name: [] for name in costs}
    for _ in range(rounds):
        for name, statements in chosen.items():
            figures[name].append(months.each_design(statements, coded=name.startswith("coded")))
        for name, statement in CODING.items() if coded else ():
            coding[name].append(months.coding(statement))
    # Last: it empties the dictionary and fills it again month by month.
    for _ in range(rounds if coded else 0):
        coding["dictionary upkeep"].append(months.dictionary_upkeep())
    for name, values in [*figures.items(), *coding.items()]:
        print(f"  {name:40s} " + " / ".join(f"{value:.2f}" for value in values) + " s")
    print(f"load {b.load_average()}")


if __name__ == "__main__":
    main()
