"""The fast path of a Yeastar import on SQLite: SQLite, not Python, checks and parses each row.

Python does the least it can per row: the file is read in large chunks, and a chunk with no
quote, NUL or stray carriage return is split on line ends and commas, which is exactly what
the csv module would read from it. Those fields and the line go to SQLite in large
``executemany`` batches of one INSERT whose expressions do what ``cdr.parse_fields`` and
``row_values`` do in Python: parse the time (SQLite's C date functions) and check it, the
durations and the callid; with those checks the line as read is the line ``row_values`` would
render, so it is stored as read. A chunk that is not that plain (quoted fields, line breaks inside them) is read by the
csv module and parsed by ``parse_fields`` as today, in file order with the rest.

The path is optimistic. A row the SQL finds invalid makes its ``ts`` NULL, which the NOT NULL
column refuses (the ON CONFLICT clause covers only the uniqueness key, so this is never
skipped as a duplicate), and anything else in doubt (a row of the wrong width, text that is
not UTF-8, a chunk the csv module cannot read on its own) raises :class:`Doubt`. The caller
then rolls the whole transaction back and imports the file the Python way, which names the
exact line and reason. So the SQL checks are at least as strict as Python's (stricter where
that is simpler: a time or duration padded with spaces, a duration such as ``042`` for 42),
and a row both accept is stored with the same columns (tests/ingest/test_yeastar_sql.py).
"""

from __future__ import annotations

import csv
import gc
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, BinaryIO, Protocol

from cdrgate.cdr import CSV_COLUMNS, MAX_SECONDS, CdrRecord, is_header
from cdrgate.ingest.formats import RowMapper
from cdrgate.storage.columns import COLUMNS

if TYPE_CHECKING:  # at run time this module needs no SQLAlchemy (ingest/part.py's child)
    from cdrgate.storage.summary import Tally

# unixepoch() came with SQLite 3.38; an older library keeps the Python path.
AVAILABLE = sqlite3.sqlite_version_info >= (3, 38, 0)

# Large enough that per-chunk work vanishes, small enough to keep memory flat (~100 MB of
# field lists for 8 MB of text).
CHUNK_BYTES = 8 << 20

Kinds = Counter[tuple[str, str]]
# What a load stored: the rows read, the rows new, the rows per (type, status).
Loaded = tuple[int, int, Kinds]


class Doubt(Exception):
    """The fast path cannot vouch for this file; the Python path must read it."""


def _field(name: str) -> str:
    """The SQL parameter holding CSV column ``name``: rows are bound as their 14 fields and
    then the line itself."""
    return f"?{CSV_COLUMNS.index(name) + 1}"


_LINE = f"?{len(CSV_COLUMNS) + 1}"
_TIME = _field("timestart")
_DURATIONS = ("callduraction", "talkduraction")


def _seconds_valid(param: str) -> str:
    # Only a duration written as its own integer (so the stored line is the file's), within
    # parse_seconds's range; the INTEGER column stores the text as that integer.
    return (
        f"CAST({param} AS INTEGER) || '' = {param} "
        f"AND CAST({param} AS INTEGER) BETWEEN 0 AND {MAX_SECONDS}"
    )


# parse_fields in SQL. The time must be its own normalised form: SQLite reads "02-30" or
# "24:00:00" as a later day and prints it as such, and prints every time in exactly the
# "yyyy-mm-dd hh:mm:ss" shape, so the round trip also checks the shape. Year 0 is a date to
# SQLite but not to Python.
_VALID = " AND ".join(
    (
        f"{_field('callid')} <> ''",
        f"datetime({_TIME}, '+0 seconds') = {_TIME}",
        f"substr({_TIME}, 1, 4) <> '0000'",
        *(_seconds_valid(_field(name)) for name in _DURATIONS),
    )
)
_VALUES = {name: _field(name) for name in CSV_COLUMNS}
_VALUES["ts"] = f"CASE WHEN {_VALID} THEN unixepoch({_TIME}) END"
# render_csv_line of a row with no comma, quote or line break in a field, and durations as
# their integers, is the physical line: bound as it was read.
_VALUES["line"] = f"{_LINE} || char(10)"

# Into a table without the uniqueness key (a parallel load's scratch table: ingest/parallel.py).
ROWS_SQL = (
    f"INSERT INTO cdr ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join(_VALUES[name] for name in COLUMNS)})"
)
INSERT_SQL = f"{ROWS_SQL} ON CONFLICT (sn, callid) DO NOTHING"

# Where _tally finds its fields in a row.
_TIME_AT, _STATUS_AT, _TYPE_AT, _TALK_AT, _CALL_AT = map(
    CSV_COLUMNS.index, ("timestart", "status", "type", "talkduraction", "callduraction")
)


class Sink(Protocol):
    """Where the rows go: ``Inserter`` (the store), or a parallel load's scratch table.
    ``add_with`` returns the rows' tally, or None when the sink counts them otherwise (then
    ``load`` leaves them out of the kinds it returns)."""

    def add(self, record: CdrRecord, ts: int | None = None) -> None: ...

    def add_with(
        self, sql: str, rows: Sequence[Sequence[object]], tally: Callable[[], Tally] | None
    ) -> Tally | None: ...


def load(
    stream: BinaryIO,
    inserter: Sink,
    mapper: RowMapper,
    *,
    end: int | None = None,
    sql: str = INSERT_SQL,
    chunk_bytes: int | None = None,
) -> Kinds:
    """Insert every row of a Yeastar file with ``inserter`` (in its transaction, file order),
    from where ``stream`` is up to byte ``end`` (a line end) or the end of the file; returns
    the rows per (type, status). ``sql`` is the INSERT of a plain chunk's rows; ``chunk_bytes``
    how much is read at a time (default ``CHUNK_BYTES``). The stream at
    the file's start reads it as a file (a BOM, a header); elsewhere, as the rest of one.
    Raises :class:`Doubt` when the Python path must read the file instead (the caller rolls
    back)."""
    kinds: Kinds = Counter()
    at_start = stream.tell() == 0
    with _no_cycle_collection():
        for number, text in enumerate(_chunks(stream, end, chunk_bytes or CHUNK_BYTES)):
            _load_chunk(text, at_start and number == 0, inserter, sql, mapper, kinds)
    return kinds


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """The cyclic garbage collector paused: a chunk makes ~70,000 lists of fields, none in a
    cycle, and the collections their allocation sets off cost more than the splitting itself
    (2.7 s against 0.8 s for 1M rows)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _load_chunk(
    text: str, first: bool, inserter: Sink, sql: str, mapper: RowMapper, kinds: Kinds
) -> None:
    if first:
        text = text.removeprefix("\ufeff")
    lines = _plain_lines(text)
    if lines is None:
        _insert_parsed(text, first, inserter, mapper, kinds)
        return
    if first and lines and is_header(lines[0].split(","), CSV_COLUMNS):
        del lines[0]
    rows = [[*line.split(","), line] for line in lines if line]
    try:
        tally = inserter.add_with(sql, rows, lambda: _tally(rows))
    except (sqlite3.IntegrityError, sqlite3.ProgrammingError) as exc:
        # A NULL ts (a row the SQL refused) or a row not 14 fields wide (its binding count
        # is then not the statement's).
        raise Doubt(str(exc)) from None
    if tally is None:
        return
    for (_, status, type_), (calls, _, _) in tally.items():
        kinds[type_, status] += calls


def _tally(rows: list[list[str]]) -> Tally:
    """The cdr_summary counts of rows the INSERT has accepted (so each time is a valid
    "yyyy-mm-dd hh:mm:ss" and each duration its own integer), by the clock hour of their
    timestart. One pass in plain Python: as cheap as counting their kinds was, and it spares
    cdr_summary a GROUP BY over every stored row (~1 s for 1M rows)."""
    time, status, type_ = _TIME_AT, _STATUS_AT, _TYPE_AT
    talk, call = _TALK_AT, _CALL_AT
    counted: Tally = {}
    for row in rows:
        key = (row[time][:13], row[status], row[type_])
        counts = counted.get(key)
        if counts is None:
            counted[key] = [1, int(row[talk]), int(row[call])]
        else:
            counts[0] += 1
            counts[1] += int(row[talk])
            counts[2] += int(row[call])
    return counted


def _chunks(stream: BinaryIO, end: int | None, chunk_bytes: int) -> Iterator[str]:
    """The file as text up to byte ``end`` (None: its end), in pieces of whole lines (cut
    after a line feed, which is never part of a multi-byte UTF-8 character)."""
    rest = b""
    left = -1 if end is None else end - stream.tell()
    while left != 0 and (block := stream.read(chunk_bytes if left < 0 else min(chunk_bytes, left))):
        if left > 0:
            left -= len(block)
        block = rest + block
        cut = block.rfind(b"\n") + 1
        rest = block[cut:]
        if cut:
            yield _decode(block[:cut])
    if rest:
        yield _decode(rest)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Doubt("not UTF-8") from None  # the Python path names the line


def _plain_lines(text: str) -> list[str] | None:
    """The chunk's lines (without line ends) when splitting on commas reads them exactly as
    the csv module would; None when it might not."""
    if '"' in text or "\x00" in text:
        return None
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:  # the csv module refuses a bare CR in an unquoted field
            return None
    lines = text.split("\n")  # not splitlines(): csv keeps \v, \x1c, U+2028... in a field
    if lines[-1] == "":
        lines.pop()
    if lines and max(map(len, lines)) > csv.field_size_limit():
        return None  # the csv module refuses so long a field
    return lines


def _insert_parsed(text: str, first: bool, inserter: Sink, mapper: RowMapper, kinds: Kinds) -> None:
    """A chunk with quotes: read by the csv module and parsed in Python, as the Python path
    does (a header is skipped as the first row of the file, or as any row that is one)."""
    reader = csv.reader(_with_line_ends(text), strict=True)
    try:
        for index, row in enumerate(reader):
            if not row or (first and index == 0 and is_header(row, CSV_COLUMNS)):
                continue
            parsed = mapper(row)
            if parsed is not None:
                record, ts = parsed
                inserter.add(record, ts)
                kinds[record.type, record.status] += 1
    except (csv.Error, ValueError) as exc:
        # A bad row, or a quoted field running past the chunk's end.
        raise Doubt(str(exc)) from None


def _with_line_ends(text: str) -> Iterator[str]:
    """The physical lines of ``text`` with their line feeds, as the Python path reads them."""
    start = 0
    while start < len(text):
        end = text.find("\n", start) + 1 or len(text)
        yield text[start:end]
        start = end
