"""A chunk of a Yeastar file as ``cdr``'s final columns, parsed and checked here, for one
``COPY`` per month straight into the month's table (``ingest/yeastar_pg_empty.py``).

Why: converting the rows on the server (COPY into a stage table of text, then one INSERT ...
SELECT doing the checks, the casts and ``line``) cost the import ~10 s of server CPU for 1M
rows, over three times psql's ``\\copy`` of the file; the checks in Python cost ~1.7 s of
client CPU, and the COPY of the final columns ~1.5x the server CPU of that ``\\copy``
(bench/RESULTS.md, "the PostgreSQL import in one pass on the server (twenty-second round)").

The rules are the Python path's (``cdr.parse_fields``, ``formats.row_mapper``, ``row_values``),
in one place: a row goes the quick way only when those would store exactly its fields and its
line as read, which is checked cheaply:

- the chunk is plain (``_plain_lines``: no quote, NUL, backslash or tab, CR only before LF,
  no line as long as the csv module's field limit): split on line ends and commas it reads
  as the csv module reads it (a blank line is no row), no field needs quoting in ``line``,
  and none needs an escape in COPY's text format;
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

# A quick row's COPY columns: the file's own order, timestart replaced by ts, then line. COPY's
# text format: fields apart by tabs (~16 % less of the server's CPU than its csv format, whose
# quoted ``line`` it reads character by character; bench/RESULTS.md, twenty-second round).
QUICK_COLUMNS = ("id", "callid", "ts", *CSV_COLUMNS[2:], "line")
QUICK_COPY = f"COPY {{table}} ({', '.join(QUICK_COLUMNS)}) FROM STDIN"
# Rows parsed by the Python path's rules, as tuples: psycopg's write_row, text format.
ROWS_COPY = f"COPY {{table}} (id, {', '.join(COLUMNS)}) FROM STDIN"

_WIDTH = len(CSV_COLUMNS)
# What a plain chunk may not hold: a quote (the csv module's reading differs from a split),
# NUL (dropped by the Python path's rules) and what COPY's text format would read as more
# than itself (its escapes, its delimiter). One memchr each: yeastar_pg.is_plain's searches
# for two- and three-byte patterns cost ~33 ms a chunk, ~0.45 s of this process's CPU for 1M
# rows, and a blank line (which COPY's csv refuses) is simply skipped here.
_NOT_PLAIN = (b'"', b"\x00", b"\\", b"\t")
# The bytes of a quick row's time after its hour ("mm:ss") -> seconds.
_MINUTE_SECOND = {b"%02d:%02d" % (m, s): m * 60 + s for m in range(60) for s in range(60)}
# Durations written as their own integer; a larger one takes the mapper's way.
_SECONDS = frozenset(b"%d" % n for n in range(100_000))


# Rows a piece: ~0.5 MB of COPY input, so the server parses one piece while this process
# makes the next (one thread: a parse thread and a COPY thread took turns at the GIL).
PIECE_ROWS = 2048


@dataclass
class Piece:
    """Rows of one month, in file order: ``quick`` (QUICK_COPY's CSV text) or ``rows``
    (``(id, *row_values)`` tuples for ROWS_COPY)."""

    month: int  # its first second
    size: int  # rows
    quick: bytes = b""
    rows: list[tuple[object, ...]] = field(default_factory=list)


class Parser:
    """Parses a file's chunks in turn; ids from ``first_id`` on."""

    def __init__(self, mapper: RowMapper, first_id: int) -> None:
        self.mapper = mapper
        self.next_id = first_id
        # "yyyy-mm-dd hh:" -> (its first second, its month's), None when no such hour.
        self._hours: dict[bytes, tuple[int, int] | None] = {}

    def pieces(self, block: bytes) -> Iterator[Piece]:
        """``block``'s rows as pieces, in file order; ``next_id`` is past its lines once
        every piece has been taken."""
        if (lines := _plain_lines(block)) is not None:
            yield from self._plain(lines)
            return
        rows: list[tuple[object, ...]] = []
        month = -1
        for fields in yeastar_pg.csv_rows(block):
            row = self._mapped(fields)
            if row is None:
                continue
            start = partitions.month_start(row[3])  # type: ignore[arg-type]  # ts
            if rows and (start != month or len(rows) >= PIECE_ROWS):
                yield Piece(month, len(rows), rows=rows)
                rows = []
            month = start
            rows.append(row)
        if rows:
            yield Piece(month, len(rows), rows=rows)

    def _plain(self, lines: list[bytes]) -> Iterator[Piece]:
        hours, minute_second, seconds = self._hours, _MINUTE_SECOND, _SECONDS
        ident = self.next_id
        current = -1
        quick: list[bytes] = []
        for line in lines:
            if not line:
                continue  # a blank line: the csv module reads no row
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
                if quick:
                    yield Piece(current, len(quick), b"".join(quick))
                    quick = []
                self.next_id = ident
                try:
                    text = [value.decode() for value in fields]
                except UnicodeDecodeError:
                    raise Doubt("not UTF-8") from None  # the Python path names the line
                if (row := self._mapped(text)) is not None:
                    yield Piece(partitions.month_start(row[3]), 1, rows=[row])  # type: ignore[arg-type]
                ident += 1
                continue
            start, month = hour
            if month != current or len(quick) >= PIECE_ROWS:
                if quick:
                    yield Piece(current, len(quick), b"".join(quick))
                    quick = []
                current = month
            callid = fields[0]
            # The line after "callid,yyyy-mm-dd hh:mm:ss,": the file's own fields, as stored.
            rest = line[len(callid) + 21 :]
            quick.append(
                b"%d\t%s\t%d\t%s\t%s\\n\n"
                % (ident, callid, start + offset, rest.replace(b",", b"\t"), line)
            )
            ident += 1
        if quick:
            yield Piece(current, len(quick), b"".join(quick))
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

    def _mapped(self, fields: list[str]) -> tuple[object, ...] | None:
        """A row by the Python path's rules, None for a header; its line takes an id."""
        ident = self.next_id
        self.next_id += 1
        try:
            parsed = self.mapper(fields)
        except ValueError as exc:
            raise Doubt(str(exc)) from None
        if parsed is None:
            return None
        record, ts = parsed
        return (ident, *row_values(record, ts=ts))


def _plain_lines(block: bytes) -> list[bytes] | None:
    """``block``'s lines (without line ends) when splitting on commas reads them exactly as
    the csv module would and none needs an escape in COPY's text format; None when it might
    not. CRLF is a line end as LF is; a bare CR the csv module reads as one too, so not."""
    if any(byte in block for byte in _NOT_PLAIN):
        return None
    if b"\r" in block:
        block = block.replace(b"\r\n", b"\n")
        if b"\r" in block:
            return None
    if yeastar_pg.may_hold_long_line(block):
        return None
    lines = block.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return lines
