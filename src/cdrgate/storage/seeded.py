"""Sample CDRs made inside the database: one INSERT ... SELECT per chunk of ``seed.slots``.

Rows are numbered ``seq`` 1..count in time order; every random choice of row ``seq`` comes
from ``_hash(seq, stream)``, an integer hash of the row number, the stream (which choice) and
the seed, so a seed gives the same rows on both engines (SQLite's ``random()`` cannot be
seeded). The hash is the polynomial ``k**4 + k`` modulo the prime 2**31 - 1 of
``k = (seq * 6 + stream) * A + salt``: cheap, all-integer, and every intermediate product is
below 2**62, so neither engine overflows (SQLite would silently turn to floating point).
Several small choices come from one hash as the digits of a mixed-radix number.

The SELECT is a stack of subqueries, each adding the columns computed from the one below.
Each level ends in an ``OFFSET 0`` fence, or the planners would fold the levels into one and
repeat a column's whole expression wherever it is used (a hash used five times, computed five
times). No value needs CSV quoting (the constants have no comma, quote or newline, and
numbers and ``yyyy-mm-dd hh:mm:ss`` have none), so ``line`` is the fields joined by commas:
a test compares it with ``CdrRecord.csv_line()``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from sqlalchemy import Connection, text

from cdrgate.cdr import CSV_COLUMNS, LINE_TERMINATOR
from cdrgate.seed import (
    DIDS,
    EXTERNAL_PREFIXES,
    MEAN_TALK_S,
    PINCODE_PERCENT,
    RECORDED_TENTHS,
    STATUSES,
    TRUNKS,
    TYPES,
    SeedPlan,
    Slot,
)
from cdrgate.storage import partitions, pg_bulk, summary
from cdrgate.storage.cdrs import COLUMNS
from cdrgate.storage.pg_months import NewMonths

_PRIME = 2**31 - 1
_MULTIPLIER = 1_103_515_245
_STREAMS = 6
# What the SELECT yields: the record's fields in CSV order, then the CSV line.
RECORD_COLUMNS = CSV_COLUMNS


def select_rows(
    conn: Connection, plan: SeedPlan, hours: Sequence[Slot]
) -> Iterator[tuple[str, ...]]:
    """The plan's rows, in time order: ``RECORD_COLUMNS`` then the CSV line."""
    if not hours:
        return
    stage_hours(conn, hours)
    try:
        columns = ", ".join((*RECORD_COLUMNS, "line"))
        sql = f"SELECT {columns} FROM ({rows_sql(conn.dialect.name, plan)}) AS seeded"
        params = bind_params(plan, hours[0].first_seq, hours[-1].first_seq)
        for row in conn.execute(text(sql), params):
            yield tuple(row)
    finally:
        unstage_hours(conn)


class Stage:
    """The plan's hours staged on ``conn`` (temporary tables, dropped by ``close``), from
    which ``insert`` stores the rows of a range of hours.

    On PostgreSQL the months new to the store are loaded apart and attached by ``close``
    (storage/pg_months.py); the others go into ``cdr``."""

    def __init__(self, conn: Connection, plan: SeedPlan, hours: Sequence[Slot]) -> None:
        self.conn, self.plan = conn, plan
        self.new_months: NewMonths | None = None
        self.apart: set[int] = set()
        if conn.dialect.name == "postgresql":
            months = {partitions.month_start(ts) for hour in hours for ts in _hour_ends(hour)}
            self.new_months = NewMonths(conn)
            self.apart, stored = self.new_months.split(months)
            # Every other month the hours need, before this transaction touches cdr: once it
            # holds a lock there, creating a partition (on another connection) would wait out
            # its lock timeout and the rows would land in cdr_default.
            partitions.ensure(conn.engine, stored)
        stage_hours(conn, hours)
        self._rows = rows_sql(conn.dialect.name, plan)

    def _insert_sql(self, target: str, where: str) -> str:
        names = ", ".join(COLUMNS)
        # "WHERE": SQLite would read ON CONFLICT as a join's ON without one.
        # No conflict target: on PostgreSQL the key also holds ts (partitions), as in pg_bulk.
        return (
            f"INSERT INTO {target} ({names}) SELECT {names} FROM ({self._rows}) AS seeded "
            f"WHERE {where} ON CONFLICT DO NOTHING"
        )

    def insert(self, hours: Sequence[Slot]) -> int:
        """Store the rows of ``hours`` (consecutive staged hours); returns how many were new.
        Counts the rows stored in cdr in cdr_summary in the same transaction, as every insert
        of cdr does (the months apart: ``close``)."""
        conn = self.conn
        params = bind_params(self.plan, hours[0].first_seq, hours[-1].first_seq)
        if self.new_months is None:
            return self._insert_counted(self._insert_sql("cdr", "true"), params)
        pg_bulk.serialise_cdr_inserts(conn)
        inserted = 0
        # One INSERT per run of months on the same side, in time order: ids follow time.
        for apart, start, end in _runs(hours, self.apart):
            where = "true" if start is None else f"ts >= {start} AND ts < {end}"
            if apart:
                sql = self._insert_sql(self.new_months.loading, where)
                inserted += max(int(conn.execute(text(sql), params).rowcount), 0)
            else:
                inserted += self._insert_counted(self._insert_sql("cdr", where), params)
        return inserted

    def _insert_counted(self, sql: str, params: dict[str, object]) -> int:
        conn = self.conn
        after = summary.newest_id(conn)
        result = conn.execute(text(sql), params)
        summary.add_stored(conn, after)
        return max(int(result.rowcount), 0)

    def close(self) -> int:
        """Drop the staged hours and attach the months loaded apart (last before the
        commit); returns how many rows were dropped as duplicates there."""
        unstage_hours(self.conn)
        return 0 if self.new_months is None else self.new_months.finish()


def _hour_ends(hour: Slot) -> tuple[int, int]:
    return hour.ts, hour.ts + 3599


def _runs(hours: Sequence[Slot], apart: set[int]) -> list[tuple[bool, int | None, int | None]]:
    """``hours``' months grouped into runs on the same side (loaded apart or not), in time
    order: ``(apart, first second, end)``, the bounds None when there is one run."""
    months = sorted({partitions.month_start(ts) for hour in hours for ts in _hour_ends(hour)})
    runs: list[tuple[bool, int | None, int | None]] = []
    for start in months:
        side = start in apart
        if runs and runs[-1][0] == side:
            runs[-1] = (side, runs[-1][1], partitions.next_month(start))
        else:
            runs.append((side, start, partitions.next_month(start)))
    if len(runs) == 1:
        return [(runs[0][0], None, None)]
    return runs


def _slot_table(integer: str) -> str:
    return (
        f"CREATE TEMP TABLE seed_slot (first_seq {integer} PRIMARY KEY, calls {integer} "
        f"NOT NULL, ts {integer} NOT NULL, clock TEXT NOT NULL)"
    )


# SQLite's staging, also run by the seed's makers on connections of their own, in either
# SQLite library (storage/seeded_pipeline.py): the hours, one row each, and the row numbers
# within an hour. PostgreSQL has generate_series, SQLite's library does not, so a table of
# 0..max-1 (its rowid; INTEGER PRIMARY KEY is the rowid) stands in.
SQLITE_STAGING = (
    _slot_table("INTEGER"),
    "CREATE TEMP TABLE seed_counter (j INTEGER PRIMARY KEY)",
)
SQLITE_STAGE_HOUR = "INSERT INTO seed_slot VALUES (:first_seq, :calls, :ts, :clock)"
SQLITE_COUNT_UP = (
    "WITH RECURSIVE c(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM c WHERE j + 1 < :n) "
    "INSERT INTO seed_counter SELECT j FROM c"
)


def stage_hours(conn: Connection, hours: Sequence[Slot]) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(_slot_table("BIGINT"))
        stage_more_hours(conn, hours)
        return
    for sql in SQLITE_STAGING:
        conn.exec_driver_sql(sql)
    stage_more_hours(conn, hours)
    conn.execute(text(SQLITE_COUNT_UP), {"n": max(hour.calls for hour in hours)})


def stage_more_hours(conn: Connection, hours: Sequence[Slot]) -> None:
    """Stage ``hours`` (none of them staged yet) in ``seed_slot``: ``stage_hours``' own on
    either engine, and more after them on PostgreSQL only (SQLite's counter table, sized by
    ``stage_hours`` for its hours, would not grow with them)."""
    if conn.dialect.name != "postgresql":
        conn.execute(text(SQLITE_STAGE_HOUR), [vars(hour) for hour in hours])
        return
    # One statement of four arrays, where executemany runs one INSERT an hour (8,760 for a
    # year, each bound and executed by the server, each row's parameters dumped by psycopg):
    # a year's hours in ~0.03 s of the client's CPU instead of ~0.10 s, and the server's
    # share too (bench/RESULTS.md, twenty-second round). A 1M-row seed on two connections
    # stages ~20,000 hours, while the server keeps both cores busy.
    conn.execute(
        text(
            "INSERT INTO seed_slot SELECT * FROM unnest(CAST(:first_seq AS bigint[]), "
            "CAST(:calls AS bigint[]), CAST(:ts AS bigint[]), CAST(:clock AS text[]))"
        ),
        {
            "first_seq": [hour.first_seq for hour in hours],
            "calls": [hour.calls for hour in hours],
            "ts": [hour.ts for hour in hours],
            "clock": [hour.clock for hour in hours],
        },
    )


def unstage_hours(conn: Connection) -> None:
    conn.exec_driver_sql("DROP TABLE seed_slot")
    if conn.dialect.name != "postgresql":
        conn.exec_driver_sql("DROP TABLE seed_counter")


def bind_params(plan: SeedPlan, first: int, last: int) -> dict[str, object]:
    return {
        "first": first,
        "last": last,
        "salt": random.Random(plan.seed).randrange(_PRIME),
        "sn": plan.serial,
        "eol": LINE_TERMINATOR,
    }


def _pick(draw: str, values: Sequence[str]) -> str:
    """``values[draw]`` in SQL."""
    assert not any("'" in value for value in values)
    whens = " ".join(f"WHEN {i} THEN '{value}'" for i, value in enumerate(values))
    return f"CASE {draw} {whens} END"


def _weighted(draw: str, pairs: Sequence[tuple[str, int]], quote: bool = True) -> str:
    """The value whose band of percent holds ``draw`` (0..99), in SQL."""
    assert sum(weight for _, weight in pairs) == 100
    whens, upto = [], 0
    for value, weight in pairs:
        upto += weight
        whens.append(f"WHEN {draw} < {upto} THEN " + (f"'{value}'" if quote else value))
    return f"CASE {' '.join(whens)} END"


def _level(columns: Sequence[str], below: str, fence: str) -> str:
    return f"SELECT {', '.join(columns)} FROM ({below}) AS below {fence}"


def _format(dialect: str, template: str, values: Sequence[str]) -> str:
    """``template`` with each ``%`` replaced by the next value (``%2``: zero-padded to two
    digits). SQLite: one printf call, which builds the string once, where a chain of ``||``
    would build it piece by piece. PostgreSQL: a chain of ``||``, which copies the pieces
    into each new string, where ``concat`` turns every argument, the commas too, into a C
    string through its type's output function and measures it again: the row-making
    statement of a 1M-row seed took 0.7-0.9x the CPU (bench/RESULTS.md, eighteenth round).
    No value is NULL (every CASE covers its draw), which ``||`` would carry into the result."""
    if template == "%":
        return f"CAST({values[0]} AS TEXT)"
    pieces = template.split("%")
    assert len(pieces) == len(values) + 1
    padded = [piece.startswith("2") for piece in pieces[1:]]
    tails = [piece[1:] if pad else piece for piece, pad in zip(pieces[1:], padded, strict=True)]
    if dialect == "postgresql":
        parts = [f"'{pieces[0]}'"] if pieces[0] else []
        for value, pad, tail in zip(values, padded, tails, strict=True):
            parts.append(f"lpad(({value})::text, 2, '0')" if pad else f"({value})::text")
            if tail:
                parts.append(f"'{tail}'")
        return f"({' || '.join(parts)})"
    spec = pieces[0] + "".join(
        ("%02d" if pad else "%s") + tail for pad, tail in zip(padded, tails, strict=True)
    )
    return f"printf('{spec}', {', '.join(values)})"


def _hash(k: str) -> str:
    """The hash of a key ``k`` (see the module docstring) in SQL: k**4 + k mod the prime."""
    return f"({k} * {k} % {_PRIME} * ({k} * {k} % {_PRIME}) + {k}) % {_PRIME}"


def rows_sql(dialect: str, plan: SeedPlan, numbered: bool = False) -> str:
    """One SELECT of the staged hours' rows from ``:first`` to ``:last`` (first_seq values);
    ``numbered``: with each row's number ``seq`` too (1..count, in time order).

    Five levels, each passing up as few columns as it can (copying a column from one level
    to the next costs about as much as computing a small one): the hash keys, the hashes,
    the call's type, status and talk time, the record's fields, the line. A choice only one
    kind of call needs is computed inside its CASE branch, for those calls only.
    """
    pg = dialect == "postgresql"
    fence = "OFFSET 0" if pg else "LIMIT -1 OFFSET 0"
    counter = (
        "CROSS JOIN LATERAL generate_series(0, s.calls - 1) AS c(j)"
        if pg
        # CROSS JOIN keeps seed_slot the outer loop: rows come out in seq (time) order.
        else "CROSS JOIN seed_counter AS c"
    )
    within = "" if pg else " AND c.j < s.calls"
    # The whole part of a positive number. Not floor(): SQLAlchemy installs a Python floor()
    # on SQLite connections, a call into Python per row; SQLite's CAST truncates.
    whole = "trunc" if pg else ""
    seq = "s.first_seq + c.j"
    keys = [
        f"{seq} AS seq",
        *("c.j AS j", "s.calls AS calls", "s.ts AS hour_ts", "s.clock AS clock"),
        *(
            f"((({seq}) * {_STREAMS} + {i}) % {_PRIME} * {_MULTIPLIER} + :salt) % {_PRIME} AS k{i}"
            for i in range(_STREAMS)
        ),
    ]
    sql = (
        f"SELECT {', '.join(keys)} FROM seed_slot AS s {counter} "
        f"WHERE s.first_seq BETWEEN :first AND :last{within} {fence}"
    )
    hashes = [
        "seq",
        # Evenly spread over the hour, each row jittered within its share: still in order.
        f"(j * 3600 + {_hash('k5')} % 3600) / calls AS offset_s",
        *("hour_ts", "clock"),
        *(f"{_hash(f'k{i}')} AS h{i}" for i in range(_STREAMS)),
    ]
    sql = _level(hashes, sql, fence)

    type_names = [name for name, _ in TYPES]
    assert type_names[:2] == ["Inbound", "Outbound"]
    kind = _weighted("h0 % 100", [(str(i), w) for i, (_, w) in enumerate(TYPES)], quote=False)
    status = (
        f"CASE {kind} "
        + " ".join(
            f"WHEN {i} THEN {_weighted('h0 / 100 % 100', STATUSES[name])}"
            for i, name in enumerate(type_names)
        )
        + " END"
    )
    # (2 * draw + 1) / 2e6 is in (0, 1): the exponential's inverse CDF never sees 0.
    answered = (
        f"CAST({whole}(-ln(CAST(h4 % 1000000 * 2 + 1 AS DOUBLE PRECISION) / 2000000) * "
        f"{MEAN_TALK_S}) AS INTEGER) + 3"
    )
    voicemail = f"5 + h3 / {len(TRUNKS) * len(DIDS)} % 55"
    calls = [
        *("seq", "offset_s", "hour_ts", "clock"),
        f"{kind} AS kind",
        f"{status} AS status",
        f"CASE {status} WHEN 'ANSWERED' THEN {answered} WHEN 'VOICEMAIL' THEN {voicemail} "
        "ELSE 0 END AS talk",
        *(f"h{i}" for i in range(_STREAMS)),
    ]
    sql = _level(calls, sql, fence)

    n_ext, first_ext = plan.extensions, plan.first_extension
    ext = f"{first_ext} + h1 % {n_ext}"
    prefix = _pick(f"h2 / 9000000 % {len(EXTERNAL_PREFIXES)}", EXTERNAL_PREFIXES)
    external = _format(dialect, "%%", [prefix, "1000000 + h2 % 9000000"])
    trunk = _pick(f"h3 % {len(TRUNKS)}", TRUNKS)
    inbound, outbound = "kind = 0", "kind = 1"
    pin = f"1000 + h3 / {len(TRUNKS) * len(DIDS) * 55} % 8999"
    callid = _format(dialect, "%.%", ["hour_ts + offset_s", "seq"])
    timestart = _format(dialect, "%%2:%2", ["clock", "offset_s / 60", "offset_s % 60"])
    callfrom = f"CASE WHEN {inbound} THEN {external} ELSE {_format(dialect, '%', [ext])} END"
    callto = (
        f"CASE WHEN {inbound} THEN {_format(dialect, '%', [ext])} WHEN {outbound} "
        f"THEN {external} ELSE {_format(dialect, '%', [f'{first_ext} + h1 / {n_ext} % {n_ext}'])} "
        "END"
    )
    type_ = _pick("kind", type_names)
    # Only answered calls that are recorded name a file: the name's parts are computed again
    # for those (a fifth of the rows) rather than passed up for all.
    stamp = _format(
        dialect,
        "%%2%2",
        [
            "replace(replace(replace(clock, '-', ''), ' ', ''), ':', '')",
            "offset_s / 60",
            "offset_s % 60",
        ],
    )
    recording = _format(dialect, "%-%-%-%-%.wav", [stamp, callid, callfrom, callto, type_])
    passed_up = ["seq"] if numbered else []
    fields = [
        *passed_up,
        "hour_ts + offset_s AS ts",
        f"{callid} AS callid",
        f"{timestart} AS timestart",
        f"{callfrom} AS callfrom",
        f"{callto} AS callto",
        "CASE WHEN status = 'FAILED' THEN h5 / 3600 % 4 ELSE 2 + h0 / 10000 % 33 + talk END "
        "AS callduraction",
        "talk AS talkduraction",
        f"CASE WHEN {inbound} THEN {trunk} ELSE '' END AS srctrunkname",
        f"CASE WHEN {outbound} THEN {trunk} ELSE '' END AS dsttrunkname",
        "status",
        f"{type_} AS type",
        f"CASE WHEN {outbound} AND h5 / 14400 % 100 < {PINCODE_PERCENT} "
        f"THEN {_format(dialect, '%', [pin])} ELSE '' END AS pincode",
        f"CASE WHEN status = 'ANSWERED' AND h4 / 1000000 % 10 < {RECORDED_TENTHS} "
        f"THEN {recording} ELSE '' END AS recording",
        f"CASE WHEN {inbound} THEN {_pick(f'h3 / {len(TRUNKS)} % {len(DIDS)}', DIDS)} ELSE '' END "
        "AS didnumber",
        ":sn AS sn",
    ]
    sql = _level(fields, sql, fence)
    line = _line(dialect, RECORD_COLUMNS)
    return _level([*passed_up, "ts", *RECORD_COLUMNS, f"{line} AS line"], sql, fence)


def _line(dialect: str, columns: Sequence[str]) -> str:
    """The CSV line of ``columns`` (no value needs quoting: see the module docstring) in SQL.
    PostgreSQL: ``concat_ws`` of the values cast to text, which copies each once into one
    buffer, where a chain of 29 ``||`` makes a new, longer string at each step: a month's
    row SELECT took ~0.9x the CPU (bench/RESULTS.md, twenty-first round). Cast first, the
    values reach ``concat_ws`` as text, whose output function is a copy (``_format``: given
    integers and literals, ``concat`` cost more). It skips NULLs, but no value is NULL."""
    if dialect == "postgresql":
        values = ", ".join(f"({column})::text" for column in columns)
        return f"(concat_ws(',', {values}) || :eol)"
    return _format(dialect, ",".join(["%"] * len(columns)) + "%", [*columns, ":eol"])
