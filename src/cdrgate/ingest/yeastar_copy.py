"""A chunk of a Yeastar file as ``cdr``'s final columns, parsed and checked here, for one
``COPY`` per month straight into the month's table (``ingest/yeastar_pg_empty.py``).

Why: converting the rows on the server (COPY into a stage table of text, then one INSERT ...
SELECT doing the checks, the casts and ``line``) cost the import ~10 s of server CPU for 1M
rows, four times the COPY of the file alone; the checks in Python cost ~1.7 s of client
CPU, and the COPY of the final columns about what psql's ``\\copy`` of the file costs
(bench/RESULTS.md, "the PostgreSQL import in one pass (twenty-second round)").

The rules are the Python path's (``cdr.parse_fields``, ``formats.row_mapper``, ``row_values``),
in one place: a row goes the quick way only when those would store exactly its fields and its
line as read, which is checked cheaply:

- the chunk is ``yeastar_pg.is_plain`` (no quote, no blank line, CR only before LF, no long
  line, no COPY end marker) and holds no NUL: split on line ends and commas it reads as the
  csv module reads it, and no field needs quoting in ``line``;
- 14 fields, a callid, a time ``yyyy-mm-dd hh:mm:ss`` whose hour ``parse_pbx_time`` accepts
  (asked once an hour, cached) and whose ``mm:ss`` is one of the 3,600 real ones, and
  durations written as their own integer below 100,000 (one set lookup each).

Every other row (a header, a duration padded or large, a time with spaces, any row of a chunk
that is not plain) goes through the row mapper and ``row_values``, as the Python path stores
it; a row the mapper refuses raises :class:`Doubt`, and the caller rolls back and reads the
file the Python way, which names the line. So the stored rows are the Python path's, always.

Each line of the chunk (each csv record when not plain) takes the next id, header rows too
(their ids are left unused), so ids follow the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from cdrgate.cdr import CSV_COLUMNS
from cdrgate.ingest import yeastar_pg
from cdrgate.ingest.formats import RowMapper
from cdrgate.ingest.yeastar_sql import Doubt
from cdrgate.storage import partitions
from cdrgate.storage.cdrs import row_values
from cdrgate.storage.columns import COLUMNS
from cdrgate.timefmt import parse_pbx_time

# A quick row's COPY columns: the file's own order, timestart replaced by ts, then line.
QUICK_COLUMNS = ("id", "callid", "ts", *CSV_COLUMNS[2:], "line")
_TEXT = [
    name for name in QUICK_COLUMNS if name not in ("id", "ts", "callduraction", "talkduraction")
]
# FORCE_NOT_NULL: an empty unquoted field is '' (as the csv module reads it), not NULL.
QUICK_COPY = (
    f"COPY {{table}} ({', '.join(QUICK_COLUMNS)}) FROM STDIN "
    f"(FORMAT csv, FORCE_NOT_NULL ({', '.join(_TEXT)}))"
)
# Rows parsed by the Python path's rules, as tuples: psycopg's write_row, text format.
ROWS_COPY = f"COPY {{table}} (id, {', '.join(COLUMNS)}) FROM STDIN"

_WIDTH = len(CSV_COLUMNS)
# The bytes of a quick row's time after its hour ("mm:ss") -> seconds.
_MINUTE_SECOND = {b"%02d:%02d" % (m, s): m * 60 + s for m in range(60) for s in range(60)}
# Durations written as their own integer; a larger one takes the mapper's way.
_SECONDS = frozenset(b"%d" % n for n in range(100_000))


@dataclass
class Month:
    """One month's rows of a chunk."""

    quick: list[bytes] = field(default_factory=list)  # QUICK_COPY's CSV lines
    rows: list[tuple[object, ...]] = field(default_factory=list)  # (id, *row_values)

    def __len__(self) -> int:
        return len(self.quick) + len(self.rows)


@dataclass
class Chunk:
    months: dict[int, Month]  # month start -> its rows
    next_id: int  # the id after the chunk's last line's


class Parser:
    """Parses a file's chunks in turn; ids from ``first_id`` on."""

    def __init__(self, mapper: RowMapper, first_id: int) -> None:
        self.mapper = mapper
        self.next_id = first_id
        # "yyyy-mm-dd hh:" -> (its first second, its month's), None when no such hour.
        self._hours: dict[bytes, tuple[int, int] | None] = {}

    def parse(self, block: bytes) -> Chunk:
        months: dict[int, Month] = {}
        if yeastar_pg.is_plain(block) and b"\x00" not in block:
            self._plain(block, months)
        else:
            for fields in yeastar_pg.csv_rows(block):
                self._mapped(fields, months)
        return Chunk(months, self.next_id)

    def _plain(self, block: bytes, months: dict[int, Month]) -> None:
        if b"\r" in block:
            block = block.replace(b"\r\n", b"\n")
        lines = block.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        hours, minute_second, seconds = self._hours, _MINUTE_SECOND, _SECONDS
        ident = self.next_id
        month = current = -1
        quick: list[bytes] = []
        for line in lines:
            fields = line.split(b",")
            time = fields[1] if len(fields) == _WIDTH else b""
            key = time[:14]
            hour = hours[key] if key in hours else self._hour(key)
            offset = minute_second.get(time[14:])
            if (
                hour is None
                or offset is None
                or not fields[0]
                or fields[4] not in seconds
                or fields[5] not in seconds
            ):
                self.next_id = ident
                try:
                    text = [value.decode() for value in fields]
                except UnicodeDecodeError:
                    raise Doubt("not UTF-8") from None  # the Python path names the line
                self._mapped(text, months)
                ident += 1
                continue
            start, month = hour
            if month != current:
                quick = months.setdefault(month, Month()).quick
                current = month
            callid = fields[0]
            # The line after "callid,yyyy-mm-dd hh:mm:ss,": the file's own fields, as stored.
            rest = line[len(callid) + 21 :]
            quick.append(b'%d,%s,%d,%s,"%s\n"\n' % (ident, callid, start + offset, rest, line))
            ident += 1
        self.next_id = ident

    def _hour(self, text: bytes) -> tuple[int, int] | None:
        found: tuple[int, int] | None = None
        if len(text) == 14 and text.isascii():
            try:
                start = parse_pbx_time(text.decode() + "00:00")
            except ValueError:
                pass
            else:
                found = start, partitions.month_start(start)
        self._hours[text] = found
        return found

    def _mapped(self, fields: list[str], months: dict[int, Month]) -> None:
        """A row by the Python path's rules (a header is skipped); its line takes an id."""
        ident = self.next_id
        self.next_id += 1
        try:
            parsed = self.mapper(fields)
        except ValueError as exc:
            raise Doubt(str(exc)) from None
        if parsed is None:
            return
        record, ts = parsed
        row = (ident, *row_values(record, ts=ts))
        months.setdefault(partitions.month_start(ts), Month()).rows.append(row)


def chunks(blocks: Iterator[bytes], parser: Parser) -> Iterator[Chunk]:
    for number, block in enumerate(blocks):
        if number == 0:
            block = block.removeprefix(yeastar_pg.BOM)
        yield parser.parse(block)
