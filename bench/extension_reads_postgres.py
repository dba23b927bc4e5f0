"""The some-extensions reads on PostgreSQL under each design of the extension B-trees
(bench/month_btrees_postgres.py --designs times their builds; twenty-fifth round):

    .venv/bin/python bench/extension_reads_postgres.py DATABASE_URL [--rounds 3] [--reads 1000]

DATABASE_URL names a store holding month partitions (``cdrgate seed --count 1000000``); its
``cdr`` is only read. Each design gets its own copy of ``cdr`` (``bench_ext_<design>``,
partitioned by the same months, rows in id order, the schema's other four B-trees and the
design's own), made once and dropped at the end. Then per round, the designs interleaved,
the same random arguments for each: ``--reads`` small flows' reads (``session_day``'s day
read from its month: one extension of the seed's 50, one day, LIMIT 1001) and ``--reads``
/ 20 downloads of some extensions (three extensions, a whole month, read from the parent
table: ``cdrs._either_side``), each as a prepared generic plan (the event loop's settings:
``storage/pg_loop.py``); printed: the backend's CPU per read (from /proc: the server must run
on this machine) and the rows each design returned (the same for all, or the design is not
exact). ``--explain`` prints EXPLAIN (ANALYZE, BUFFERS) of one read of each kind per design.
Bounded: the copies ~15 s each at load 2; a round ~(reads x 0.5 ms + reads / 20 x 10 ms) a
design.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass

import benchlib as b
import psycopg
from month_btrees_postgres import HASH8, load  # one copy of each

from cdrgate.seed import SeedPlan
from cdrgate.storage import partitions
from cdrgate.timefmt import parse_pbx_time

PREFIX = "bench_ext_"
# The other B-trees of a month, as the import makes them (migrations 0005, 0011, 0016).
COMMON = [
    "ALTER TABLE {t} ADD PRIMARY KEY (id, ts)",
    "ALTER TABLE {t} ADD UNIQUE (ts, callid, sn)",
    "CREATE INDEX ON {t} (sn)",
    "CREATE INDEX ON {t} (recording) WHERE recording <> ''",
]
DAY = 86400
SEEDED = SeedPlan(count=0)  # ``cdrgate seed``'s defaults: its year, its 50 extensions
FIRST_DAY = parse_pbx_time(SEEDED.start)
EXTENSIONS = [str(SEEDED.first_extension + number) for number in range(SEEDED.extensions)]


def either(side_test: str) -> str:
    """The two arms' OR (``cdrs._either_side``), ``side_test`` formatted with each side."""
    arms = [
        f"({side_test.format(side=side)} AND ts BETWEEN %(start)s AND %(end)s)"
        for side in ("callfrom", "callto")
    ]
    return " OR ".join(arms)


def hashed(function: str) -> str:
    """An arm's test on an integer hash of the side (``function`` formatted with it: its
    expression B-tree), then on the text itself: exact whatever the hash's collisions."""
    return (
        f"{function.format(side='{side}')} = ANY (ARRAY(SELECT {function.format(side='e')} "
        "FROM unnest(%(exts)s::text[]) e)) AND {side} = ANY (%(exts)s::text[])"
    )


@dataclass(frozen=True)
class Design:
    name: str
    indexes: list[str]  # each formatted with the table {t}
    where: str  # the read's condition on the table (or its month)
    extra_columns: str = ""  # the copy's columns beyond cdr's
    side_table: bool = False


TEXT = either("{side} = ANY (%(exts)s::text[])")
DESIGNS = [
    Design(
        "text", ["CREATE INDEX ON {t} (callfrom, ts)", "CREATE INDEX ON {t} (callto, ts)"], TEXT
    ),
    Design(
        "hash8",
        [f"CREATE INDEX ON {{t}} (({HASH8.format(side=s)}), ts)" for s in ("callfrom", "callto")],
        either(hashed(HASH8)),
    ),
    Design(
        "hash4",
        [f"CREATE INDEX ON {{t}} ((hashtext({s})), ts)" for s in ("callfrom", "callto")],
        either(hashed("hashtext({side})")),
    ),
    # The hash4 index, the text test once for both arms: each row's Filter is then the two
    # text comparisons alone, not each arm's hash again.
    Design(
        "hash4_once",
        [f"CREATE INDEX ON {{t}} ((hashtext({s})), ts)" for s in ("callfrom", "callto")],
        "("
        + " OR ".join(
            f"(hashtext({s}) = ANY (ARRAY(SELECT hashtext(e) FROM unnest(%(exts)s::text[]) e)) "
            "AND ts BETWEEN %(start)s AND %(end)s)"
            for s in ("callfrom", "callto")
        )
        + ") AND (callfrom = ANY (%(exts)s::text[]) OR callto = ANY (%(exts)s::text[]))",
    ),
    Design(
        "hash_index",
        [f"CREATE INDEX ON {{t}} USING hash ({s})" for s in ("callfrom", "callto")],
        TEXT,
    ),
    Design(
        "gin",
        ["CREATE INDEX ON {t} USING gin ((ARRAY[hashtext(callfrom), hashtext(callto)]))"],
        "ARRAY[hashtext(callfrom), hashtext(callto)] && "
        "ARRAY(SELECT hashtext(e) FROM unnest(%(exts)s::text[]) e) "
        "AND (callfrom = ANY (%(exts)s::text[]) OR callto = ANY (%(exts)s::text[])) "
        "AND ts BETWEEN %(start)s AND %(end)s",
    ),
    Design(
        "side",
        [],
        # The side table's B-tree finds the rows' (id, ts); the primary key reads each.
        "(id, ts) IN (SELECT id, ts FROM {t}_side WHERE ext = ANY (ARRAY(SELECT "
        "hashtextextended(e, 0) FROM unnest(%(exts)s::text[]) e)) "
        "AND ts BETWEEN %(start)s AND %(end)s) "
        "AND (callfrom = ANY (%(exts)s::text[]) OR callto = ANY (%(exts)s::text[]))",
        side_table=True,
    ),
    Design(
        "coded",
        ["CREATE INDEX ON {t} (callfrom_id, ts)", "CREATE INDEX ON {t} (callto_id, ts)"],
        either(
            "{side}_id = ANY (ARRAY(SELECT id FROM " + PREFIX + "ids WHERE ext = ANY "
            "(%(exts)s::text[])))"
        ),
        extra_columns=", f.id AS callfrom_id, t.id AS callto_id",
    ),
]


Conn = psycopg.Connection[tuple[object, ...]]


def months(conn: Conn) -> list[tuple[str, str]]:
    """cdr's month partitions: (name, bounds clause)."""
    return [
        (str(name), str(bounds))
        for name, bounds in conn.execute(
            "SELECT relname, pg_get_expr(relpartbound, oid) FROM pg_class "
            "WHERE relname ~ '^cdr_p[0-9]{6}$' ORDER BY 1"
        )
    ]


def copy(conn: Conn, design: Design) -> None:
    """``cdr`` copied as ``bench_ext_<design>``, month by month, with its indexes."""
    table = PREFIX + design.name
    conn.execute(f"DROP TABLE IF EXISTS {table}, {table}_side")  # type: ignore[arg-type]
    columns = ", callfrom_id int NOT NULL, callto_id int NOT NULL" if design.extra_columns else ""
    conn.execute(
        f"CREATE TABLE {table} (LIKE cdr INCLUDING DEFAULTS{columns}) PARTITION BY RANGE (ts)"  # type: ignore[arg-type]
    )
    if design.side_table:
        conn.execute(
            f"CREATE TABLE {table}_side (ext bigint, ts bigint, id bigint) PARTITION BY RANGE (ts)"  # type: ignore[arg-type]
        )
    for month, bounds in months(conn):
        part = table + month.removeprefix("cdr")
        conn.execute(f"CREATE TABLE {part} PARTITION OF {table} {bounds}")  # type: ignore[arg-type]
        joins = (
            f" JOIN {PREFIX}ids f ON f.ext = m.callfrom JOIN {PREFIX}ids t ON t.ext = m.callto"
            if design.extra_columns
            else ""
        )
        conn.execute(
            f"INSERT INTO {part} SELECT m.*{design.extra_columns} FROM {month} m{joins} "  # type: ignore[arg-type]
            "ORDER BY m.id"
        )
        for statement in [*COMMON, *design.indexes]:
            conn.execute(statement.format(t=part))  # type: ignore[arg-type]
        if design.side_table:
            side = f"{table}_side{month.removeprefix('cdr')}"
            conn.execute(f"CREATE TABLE {side} PARTITION OF {table}_side {bounds}")  # type: ignore[arg-type]
            conn.execute(
                f"INSERT INTO {side} SELECT {HASH8.format(side='callfrom')}, ts, id FROM {part} "  # type: ignore[arg-type]
                f"UNION ALL SELECT {HASH8.format(side='callto')}, ts, id FROM {part}"
            )
            conn.execute(f"CREATE INDEX ON {side} (ext, ts)")  # type: ignore[arg-type]
    conn.execute(f"VACUUM ANALYZE {table}")  # type: ignore[arg-type]
    if design.side_table:
        conn.execute(f"VACUUM ANALYZE {table}_side")  # type: ignore[arg-type]


def dictionary(conn: Conn) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {PREFIX}ids")  # type: ignore[arg-type]
    conn.execute(
        f"CREATE TABLE {PREFIX}ids AS SELECT ext, (row_number() OVER ())::int AS id "  # type: ignore[arg-type]
        "FROM (SELECT callfrom AS ext FROM cdr UNION SELECT callto FROM cdr) AS numbers"
    )
    conn.execute(f"ALTER TABLE {PREFIX}ids ADD PRIMARY KEY (ext)")  # type: ignore[arg-type]
    conn.execute(f"ANALYZE {PREFIX}ids")  # type: ignore[arg-type]


def small(design: Design, day: int) -> str:
    """The small flow's read: the day's month table (``session_day``)."""
    month = partitions.partition_name(partitions.month_start(day)).removeprefix("cdr")
    table = PREFIX + design.name + month
    return (
        f"SELECT line, ts, callid, sn FROM {table} "
        f"WHERE {design.where.format(t=PREFIX + design.name)} "
        "ORDER BY ts, callid, sn LIMIT 1001"
    )


def download(design: Design) -> str:
    """The some-extensions download: the parent table (``cdrs._either_side``)."""
    return (
        f"SELECT line FROM {PREFIX}{design.name} "
        f"WHERE {design.where.format(t=PREFIX + design.name)} ORDER BY ts, callid, sn"
    )


def small_args(rng: random.Random) -> tuple[int, dict[str, object]]:
    day = FIRST_DAY + rng.randrange(365) * DAY
    return day, {"exts": [rng.choice(EXTENSIONS)], "start": day, "end": day + DAY - 1}


def download_args(rng: random.Random) -> dict[str, object]:
    start = FIRST_DAY
    for _ in range(rng.randrange(12)):  # a month of the seed's year
        start = partitions.next_month(start)
    end = partitions.next_month(start) - 1
    return {"exts": rng.sample(EXTENSIONS, 3), "start": start, "end": end}


def measure(
    conn: Conn, pid: int, design: Design, seed: int, reads: int
) -> tuple[float, float, int]:
    """CPU per small read and per download (ms), and the rows returned in all."""
    rng = random.Random(seed)
    rows = 0
    before = b.cpu_seconds(pid)
    for _ in range(reads):
        day, params = small_args(rng)
        rows += len(conn.execute(small(design, day), params, prepare=True).fetchall())  # type: ignore[arg-type]
    middle = b.cpu_seconds(pid)
    for _ in range(max(1, reads // 20)):
        rows += len(conn.execute(download(design), download_args(rng), prepare=True).fetchall())  # type: ignore[arg-type]
    after = b.cpu_seconds(pid)
    return (middle - before) * 1000 / reads, (after - middle) * 1000 / max(1, reads // 20), rows


def explain(conn: Conn, design: Design) -> None:
    rng = random.Random(7)
    day, params = small_args(rng)
    for label, statement, args in (
        ("small flow's read", small(design, day), params),
        ("some-extensions download", download(design), download_args(rng)),
    ):
        print(f"--- {design.name}: {label} {args}")
        plan = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {statement}", args)  # type: ignore[arg-type]
        for (line,) in plan:
            print("    " + str(line))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reads", type=int, default=1000)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--designs", default=",".join(d.name for d in DESIGNS))
    parser.add_argument("--keep", action="store_true", help="keep the copies (and reuse them)")
    args = parser.parse_args()
    chosen = [d for d in DESIGNS if d.name in args.designs.split(",")]
    with psycopg.connect(args.url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        pid = int(str(row[0]))
        conn.execute("SET jit = off")
        conn.execute("SET plan_cache_mode = force_generic_plan")
        try:
            print(f"load {load()}")
            dictionary(conn)
            for design in chosen:
                exists = conn.execute(
                    "SELECT 1 FROM pg_class WHERE relname = %s", [PREFIX + design.name]
                ).fetchone()
                if not (args.keep and exists):
                    copy(conn, design)
            print(f"copies made; load {load()}")
            if args.explain:
                for design in chosen:
                    explain(conn, design)
            for number in range(args.rounds):
                seed = 1000 + number
                for design in chosen:
                    measure(conn, pid, design, seed + 99, 50)  # plans cached, pages read
                    small_ms, download_ms, rows = measure(conn, pid, design, seed, args.reads)
                    print(
                        f"round {number + 1} {design.name:11s} small read {small_ms:.3f} ms  "
                        f"download {download_ms:.2f} ms  rows {rows}  (load {load()})"
                    )
        finally:
            if not args.keep:
                for design in chosen:
                    name = PREFIX + design.name
                    conn.execute(f"DROP TABLE IF EXISTS {name}, {name}_side")  # type: ignore[arg-type]
                conn.execute(f"DROP TABLE IF EXISTS {PREFIX}ids")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
