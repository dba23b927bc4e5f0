"""The fast path of a Yeastar import on PostgreSQL: the server, not Python, parses and checks
each row.

The file is read in large chunks of whole lines. A plain chunk (no quote, no blank line, CR
only in CRLF, no line as long as the csv module's field limit) is streamed as it is through ``COPY ... FROM STDIN (FORMAT csv)`` into a
temporary text table: the server's C parser splits it, and on such text it splits exactly
where the csv module would. A chunk that is not that plain is read by the csv module here and
its rows copied as fields, so quoting is always Python's reading. One INSERT ... SELECT per
chunk then does in SQL what ``cdr.parse_fields`` and ``row_values`` do: checks the time
(shape, a real date and time of day), the durations (digits, in range) and the callid,
converts them, renders ``line`` as ``row_values`` would, and skips duplicates (ON CONFLICT
DO NOTHING), in file order (the staging table numbers its rows).

The path is optimistic, as ``yeastar_sql`` is on SQLite. A row the SQL refuses gets a NULL
``ts``, which the NOT NULL column refuses; anything else in doubt (a row of the wrong width,
text that is not UTF-8, NUL, a line the COPY protocol would read as its end marker, a chunk
the csv module cannot read on its own) makes the server or this module raise :class:`Doubt`.
The caller rolls the transaction back (the staging table goes with it: ON COMMIT DROP, made
inside it) and imports the file the Python way, which names the exact line and reason. The
SQL checks are at least as strict as Python's (stricter where that is simpler: a time or a
duration padded with spaces, a duration such as ``042`` for 42), and a row both accept is stored alike
(tests/ingest/test_yeastar_pg.py).
"""

from __future__ import annotations

import calendar
import csv
import io
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import BinaryIO

import psycopg
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from cdrgate.cdr import CSV_COLUMNS
from cdrgate.ingest.formats import RowMapper
from cdrgate.ingest.yeastar_sql import Doubt, Kinds
from cdrgate.storage.cdrs import Inserter
from cdrgate.storage.columns import COLUMNS
from cdrgate.storage.partitions import next_month
from cdrgate.storage.pg_bulk import ensure_months, serialise_cdr_inserts
from cdrgate.storage.pg_months import NewMonths
from cdrgate.storage.tables import CDR_ID_SEQUENCE

STAGE = "cdr_file_stage"
# A chunk's rows as stored, with their ids, when it goes to both sides (``_load_mixed``).
_ROWS = "cdr_file_rows"
# About 70,000 rows: per-chunk statements vanish in the work, and a chunk's rows sort in
# memory (_SORT_MEMORY).
CHUNK_BYTES = 8 << 20
_FIELDS = ", ".join(CSV_COLUMNS)
BOM = "\ufeff".encode()

# ``n`` numbers the rows as they are copied: the INSERT takes them in that order, so ids
# follow the file.
_CREATE_STAGE = (
    f"CREATE TEMP TABLE {STAGE} ("
    + ", ".join(f"{name} text" for name in CSV_COLUMNS)
    + ", n bigint GENERATED ALWAYS AS IDENTITY)"
)
# FORCE_NOT_NULL: an empty unquoted field is '' (as the csv module reads it), not NULL.
_COPY_CSV = f"COPY {STAGE} ({_FIELDS}) FROM STDIN (FORMAT csv, FORCE_NOT_NULL ({_FIELDS}))"
# Rows read here go as fields, in the text format psycopg's write_row speaks.
_COPY_ROWS = f"COPY {STAGE} ({_FIELDS}) FROM STDIN"

# cdr.is_header in SQL (stricter: only spaces are trimmed; a header padded otherwise is a bad
# row, so Doubt, and Python then reads it as a header).
_HEADER = (
    "lower(btrim(ltrim(callid, U&'\\FEFF'))) = 'callid' AND lower(btrim(timestart)) = 'timestart'"
)
_DURATIONS = ("callduraction", "talkduraction")


def _seconds_valid(name: str) -> str:
    # Only a duration written as its own integer (so the line as read is the one row_values
    # renders), not negative; past MAX_SECONDS (PostgreSQL's int) the cast fails: a Doubt.
    return f"{name}::int::text = {name} AND left({name}, 1) <> '-'"


# parse_pbx_time in SQL: the time must be its own normalised form. The cast refuses a date
# that does not exist (Feb 30, year 0) with an error, a Doubt too; it reads "24:00:00" or a
# 60th second as a later time and prints every time in exactly the "yyyy-mm-dd hh:mm:ss"
# shape (DateStyle ISO, set by ``load``), so the round trip checks the rest. The length
# rules out the special words ('infinity', ...) that print as themselves. ``parsed`` is the
# cast, made once a row by _rows_sql: every row's time is cast, so a row refused for
# another reason may fail on it first; a Doubt all the same.
_VALID = " AND ".join(
    (
        "callid <> ''",
        "length(timestart) = 19",
        "parsed::text = timestart",
        _seconds_valid("callduraction"),
        _seconds_valid("talkduraction"),
    )
)
_TS = f"CASE WHEN {_VALID} THEN extract(epoch FROM parsed)::bigint END"


def _quoted(name: str) -> str:
    """cdr._quote in SQL: the field in quotes (inner quotes doubled) when it needs them."""
    return (
        f"CASE WHEN {name} ~ '[,\"\\r\\n]' "
        f"THEN '\"' || replace({name}, '\"', '\"\"') || '\"' ELSE {name} END"
    )


def _line(quoting: bool) -> str:
    """render_csv_line of the row (its durations are their own integers, its time needs no
    quotes). In a plain chunk no field can hold a comma, quote or line end, so none needs
    quoting and this is the line as read."""
    parts = [
        name if not quoting or name in ("timestart", *_DURATIONS) else _quoted(name)
        for name in CSV_COLUMNS
    ]
    return f"concat_ws(',', {', '.join(parts)}) || E'\\n'"


def _select_sql(quoting: bool, headers: bool, ids: bool = False) -> str:
    """The chunk's rows as stored (``COLUMNS``; with ``ids``, first an id from cdr's
    sequence, taken in file order), in file order."""
    first = f"nextval('{CDR_ID_SEQUENCE}') AS id, " if ids else ""
    # PostgreSQL computes a volatile output column (nextval) after the sort: ids follow n.
    return f"SELECT {first}{_rows_sql(quoting, headers)} ORDER BY n"


def _rows_sql(quoting: bool, headers: bool) -> str:
    """The chunk's rows as stored (``COLUMNS``), in no set order."""
    values = {name: name for name in CSV_COLUMNS}
    values["ts"] = _TS
    values.update({name: f"{name}::int" for name in _DURATIONS})
    values["line"] = _line(quoting)
    # A chunk without headers (the survey says) is spared the test on every row.
    where = f" WHERE NOT ({_HEADER})" if headers else ""
    # The time cast once a row, used twice by _TS: OFFSET 0 keeps PostgreSQL from merging
    # the subquery into this SELECT, which would put the cast back in both places (-0.7 s
    # of the loader's CPU for 1M rows: bench/RESULTS.md, twenty-first round). Header rows
    # are left out before it, for their time ("timestart") is no time.
    rows = f"(SELECT *, timestart::timestamp AS parsed FROM {STAGE}{where} OFFSET 0) AS rows"
    return f"{', '.join(f'{values[name]} AS {name}' for name in COLUMNS)} FROM {rows}"


@cache
def insert_sql(target: str, quoting: bool, headers: bool) -> str:
    return (
        f"INSERT INTO {target} ({', '.join(COLUMNS)}) {_select_sql(quoting, headers)} "
        "ON CONFLICT DO NOTHING"
    )


# Per chunk: its months (for partitions.ensure), its rows' kinds, its header rows.
_SURVEY = (
    f"SELECT ({_HEADER}) AS header, substr(timestart, 1, 7), type, status, count(*) "
    f"FROM {STAGE} GROUP BY 1, 2, 3, 4"
)
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
_SORT_MEMORY = "64MB"


def load(conn: Connection, stream: BinaryIO, inserter: Inserter, mapper: RowMapper) -> Kinds:
    """Insert every row of a Yeastar file, from its start, with ``inserter`` (in its
    transaction, on ``conn``, file order); returns the rows per (type, status). ``mapper``
    parses a row in Python where the load into an empty store does (``yeastar_copy``). Raises
    :class:`Doubt` when the Python path must read the file instead (the caller rolls back)."""
    # Imported here: it builds on this module's pieces.
    from cdrgate.ingest import yeastar_pg_empty

    kinds: Kinds = Counter()
    try:
        set_up(conn)
        if yeastar_pg_empty.applies(conn, stream):
            yeastar_pg_empty.load(conn, stream, inserter, kinds, mapper)
            return kinds
        # Dropped at commit (or with the rolled-back transaction that made it).
        conn.exec_driver_sql(f"{_CREATE_STAGE} ON COMMIT DROP")
        new_months = NewMonths(conn)
        for number, block in enumerate(blocks(stream)):
            if number == 0:
                block = block.removeprefix(BOM)
            _load_block(conn, block, inserter, kinds, new_months)
        # The rows stored in cdr are counted before the months apart join them there.
        inserter.flush()
        inserter.inserted -= new_months.finish()
    except (psycopg.Error, DBAPIError) as exc:
        # The server refused a row (a NULL ts, a bad cast, the wrong width, not UTF-8, NUL).
        raise Doubt(str(exc)) from None
    return kinds


def set_up(conn: Connection) -> None:
    """The settings of a transaction that converts chunks (``conn``'s, to its end)."""
    # DateStyle: see _VALID. work_mem: each chunk's rows (~30 MB) sorted into file order in
    # memory, not through temporary files.
    conn.exec_driver_sql("SET LOCAL DateStyle = 'ISO, YMD'")
    conn.exec_driver_sql(f"SET LOCAL work_mem = '{_SORT_MEMORY}'")


@dataclass(frozen=True)
class _Chunk:
    """A chunk as copied into the stage table."""

    rows: int  # not counting header rows
    months: Counter[int]  # rows per month (its first second), as far as the survey reads them
    quoting: bool  # not plain: fields may need quotes in ``line``
    headers: bool  # holds header rows


def _copy_chunk(conn: Connection, block: bytes, kinds: Kinds) -> _Chunk:
    """``block`` into the (emptied) stage table, surveyed; its rows counted in ``kinds``."""
    plain = is_plain(block)
    copied = _copy_block(conn, block, plain)
    rows = 0
    months: Counter[int] = Counter()
    for header, month, type_, status, count in conn.exec_driver_sql(_SURVEY):
        if header:
            continue
        rows += count
        kinds[type_, status] += count
        if (start := _month_of(month)) is not None:
            months[start] += count
    return _Chunk(rows, months, not plain, rows < copied)


def _copy_block(conn: Connection, block: bytes, plain: bool) -> int:
    """``block`` (``is_plain`` or not) into the emptied stage table; returns the lines copied."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        # n numbers the chunk's lines from 1: the INSERT takes them in that order.
        cursor.execute(f"TRUNCATE {STAGE} RESTART IDENTITY")
        with cursor.copy(_COPY_CSV if plain else _COPY_ROWS) as copy:
            if plain:
                copy.write(block)
            else:
                for row in csv_rows(block):
                    copy.write_row(row)
        return max(int(cursor.rowcount), 0)
    finally:
        cursor.close()


def _month_of(month: str) -> int | None:
    """The first second of the month ``month`` ("yyyy-mm", as a time starts) names; None
    when it names none (the row's time is refused anyway)."""
    found = _MONTH.fullmatch(month)
    if found and int(found[1]) >= 1 and 1 <= int(found[2]) <= 12:
        return calendar.timegm((int(found[1]), int(found[2]), 1, 0, 0, 0))
    return None


def _load_block(
    conn: Connection, block: bytes, inserter: Inserter, kinds: Kinds, new_months: NewMonths
) -> None:
    chunk = _copy_chunk(conn, block, kinds)
    rows, months = chunk.rows, chunk.months
    if not rows:
        return
    # Months a bad time names (say 0000-01) fail here or in the INSERT: a Doubt either way.
    apart, stored = new_months.split(months)
    if stored or not apart:
        ensure_months(conn, stored)
    serialise_cdr_inserts(conn)
    quoting, headers = chunk.quoting, chunk.headers
    if not apart:
        inserter.add_selected(insert_sql("cdr", quoting, headers), rows)
    elif not stored and sum(months.values()) == rows:
        sql = insert_sql(new_months.loading, quoting, headers)
        inserter.add_apart(rows, max(int(conn.exec_driver_sql(sql).rowcount), 0))
    else:
        _load_mixed(conn, inserter, new_months, apart, rows, _select_sql(quoting, headers, True))


def _load_mixed(
    conn: Connection,
    inserter: Inserter,
    new_months: NewMonths,
    apart: set[int],
    rows: int,
    select: str,
) -> None:
    """A chunk of months stored apart and months stored in cdr: its rows take their ids in
    file order first, then go each to its side."""
    inserter.before_ids()
    conn.exec_driver_sql(f"CREATE TEMP TABLE {_ROWS} ON COMMIT DROP AS {select}")
    names = ", ".join(("id", *COLUMNS))
    in_apart = " OR ".join(f"(ts >= {start} AND ts < {next_month(start)})" for start in apart)
    new = conn.exec_driver_sql(
        f"INSERT INTO {new_months.loading} ({names}) SELECT {names} FROM {_ROWS} "
        f"WHERE {in_apart} ORDER BY id"
    ).rowcount
    inserter.add_apart(new, new)
    # A row whose ts is NULL (refused by the checks) goes this way, to the NOT NULL column.
    inserter.add_selected(
        f"INSERT INTO cdr ({names}) SELECT {names} FROM {_ROWS} "
        f"WHERE NOT coalesce({in_apart}, false) ORDER BY id ON CONFLICT DO NOTHING",
        rows - new,
    )
    conn.exec_driver_sql(f"DROP TABLE {_ROWS}")


def blocks(stream: BinaryIO) -> Iterator[bytes]:
    """The file in pieces of whole lines (cut after a line feed)."""
    rest = b""
    while block := stream.read(CHUNK_BYTES):
        block = rest + block
        cut = block.rfind(b"\n") + 1
        rest = block[cut:]
        if cut:
            yield block[:cut]
    if rest:
        yield rest


def is_plain(block: bytes) -> bool:
    """Whether the server's CSV parser reads ``block`` as the csv module would: no quote
    (where the two differ), no blank line (the csv module skips it, COPY refuses it), CR only
    before LF, and no line ``\\.`` (COPY's end-of-data marker)."""
    if b'"' in block or block.startswith((b"\n", b"\r\n", b"\\.")):
        return False
    if b"\n\n" in block or b"\n\r\n" in block or b"\n\\." in block:
        return False
    return block.count(b"\r") == block.count(b"\r\n") and not may_hold_long_line(block)


def may_hold_long_line(block: bytes) -> bool:
    """Whether a line of ``block`` may be longer than the csv module takes a field (it
    refuses the file; COPY would not). A line that long spans a whole window of half that
    size, so a line end in every window rules it out, in a few hundred searches per chunk."""
    window = csv.field_size_limit() // 2
    return any(block.find(b"\n", at, at + window) < 0 for at in range(0, len(block), window))


def csv_rows(block: bytes) -> Iterator[list[str]]:
    """A chunk that is not plain, read by the csv module as the Python path reads it (blank
    rows skipped); Doubt for what it cannot read alone (a quoted field running past the
    chunk) or a row the COPY would refuse anyway."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        raise Doubt("not UTF-8") from None
    try:
        for row in csv.reader(io.StringIO(text, newline=""), strict=True):
            if not row:
                continue
            if len(row) != len(CSV_COLUMNS):
                raise Doubt(f"{len(row)} fields")
            yield row
    except csv.Error as exc:
        raise Doubt(str(exc)) from None
