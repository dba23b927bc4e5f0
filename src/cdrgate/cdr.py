"""The call detail record as the Yeastar CSV file carries it, and its CSV rendering.

``CSV_COLUMNS`` (14 columns, Yeastar's spellings on purpose) is the one definition of the file
layout; the server's writer, the importer and the client's parser all use it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple, TextIO

from cdrgate.timefmt import parse_pbx_time


class CdrRecord(NamedTuple):
    """One CDR in its canonical server form: text fields as stored, durations as seconds."""

    callid: str
    timestart: str
    callfrom: str
    callto: str
    callduraction: int
    talkduraction: int
    srctrunkname: str
    dsttrunkname: str
    status: str
    type: str
    pincode: str
    recording: str
    didnumber: str
    sn: str

    def csv_fields(self) -> list[str]:
        return [str(value) for value in self]

    def csv_line(self) -> str:
        return render_csv_line(self.csv_fields())


CSV_COLUMNS: tuple[str, ...] = CdrRecord._fields
CSV_HEADER = ",".join(CSV_COLUMNS) + "\n"
# As sent: every download starts with it.
CSV_HEADER_BYTES = CSV_HEADER.encode()
# Bare LF: naive clients split on "\n"; CRLF would leave "\r" in the last column (sn).
LINE_TERMINATOR = "\n"
_NEEDS_QUOTING = frozenset(',"\r\n')


def _needs_quoting(value: str) -> bool:
    return not _NEEDS_QUOTING.isdisjoint(value)


def render_csv_line(fields: Sequence[str]) -> str:
    """One CSV row with RFC 4180 quoting only where a field needs it, so plain rows match the
    device byte for byte."""
    line = ",".join(fields)
    # Fast path (seed and import render every row): one scan of the joined text. No field
    # holds a comma exactly when the commas are just the separators.
    if (
        line.count(",") == len(fields) - 1
        and '"' not in line
        and "\n" not in line
        and "\r" not in line
    ):
        return line + LINE_TERMINATOR
    return ",".join(_quote(field) for field in fields) + LINE_TERMINATOR


def _quote(field: str) -> str:
    if _needs_quoting(field):
        return '"' + field.replace('"', '""') + '"'
    return field


# The valid range of a duration, decided once: what both engines' INTEGER column holds
# (PostgreSQL's is 32-bit), and 68 years of call, far beyond any real one.
MAX_SECONDS = 2**31 - 1
_MAX_DIGITS = len(str(MAX_SECONDS))


def parse_seconds(name: str, text: str) -> int:
    """A duration in whole seconds, 0..``MAX_SECONDS``; ValueError names the field."""
    text = text.strip()
    # The common case first, in few steps: every imported row has two durations.
    if text.isdigit() and text.isascii() and len(text) <= _MAX_DIGITS:
        value = int(text)
        if value <= MAX_SECONDS:
            return value
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"{name} is not a whole number of seconds: {text!r}")
    # Checked on the text: int() of a hostile digit string is itself costly.
    if len(text.lstrip("0")) > _MAX_DIGITS or int(text) > MAX_SECONDS:
        raise ValueError(f"{name} is out of range (0 to {MAX_SECONDS} seconds): {_short(text)}")
    return int(text)


def _short(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:12]}...({len(text)} digits)"


def without_nul(text: str) -> str:
    """The NUL rule for every source: NUL means nothing in a CDR and PostgreSQL text cannot
    hold it, so it is dropped wherever text comes in."""
    return text.replace("\x00", "")


def row_without_nul(fields: Sequence[str]) -> list[str]:
    """``without_nul`` for each field of a row."""
    # One scan of the whole row instead of one per field: NUL is rare.
    if "\x00" not in "".join(fields):
        return list(fields)
    return [without_nul(field) for field in fields]


def is_header(fields: Sequence[str], columns: Sequence[str]) -> bool:
    """True when a row is a header of a file laid out as ``columns`` (its first two names;
    a UTF-8 BOM and case are ignored)."""
    if len(fields) < 2:
        return False
    first, second = fields[0].lstrip("\ufeff").strip(), fields[1].strip()
    return first.lower() == columns[0] and second.lower() == columns[1]


def record_from_fields(fields: Sequence[str]) -> CdrRecord:
    """Validate one 14-field CSV row; ValueError says what is wrong."""
    return parse_fields(fields)[0]


def parse_fields(fields: Sequence[str]) -> tuple[CdrRecord, int]:
    """``record_from_fields`` plus its timestart as wall-clock seconds, parsed once (importers
    store both)."""
    if len(fields) != len(CSV_COLUMNS):
        raise ValueError(f"expected {len(CSV_COLUMNS)} columns, found {len(fields)}")
    values = row_without_nul(fields)
    callid, timestart = values[0], values[1].strip()
    if not callid:
        raise ValueError("callid is empty")
    ts = parse_pbx_time(timestart)
    call = parse_seconds("callduraction", values[4])
    talk = parse_seconds("talkduraction", values[5])
    return CdrRecord(callid, timestart, values[2], values[3], call, talk, *values[6:]), ts


class CsvRowError(ValueError):
    """A CSV file cannot be read past ``line`` (a reader split across lines lost its place)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


def iter_csv_rows(lines: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, fields)`` for each data row of a Yeastar CDR CSV.

    ``lines`` are the file's lines with their line ends (a text file opened with
    ``newline=""``); quoted fields may span lines, and ``line_number`` is where a row starts.
    The header row is optional (recognised by its first cells); a UTF-8 BOM is ignored and
    both LF and CRLF line ends are accepted. Unreadable CSV raises :class:`CsvRowError`.
    """
    reader = csv.reader(lines, strict=True)
    start_line = 1
    index = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise CsvRowError(reader.line_num, f"malformed CSV: {exc}") from None
        line, start_line = start_line, reader.line_num + 1
        index += 1
        if not row or (index == 1 and is_header(row, CSV_COLUMNS)):
            continue
        yield line, row


def write_csv(records: Iterable[CdrRecord], out: TextIO) -> int:
    """Write a whole file (header and rows); returns the number of rows."""
    out.write(CSV_HEADER)
    count = 0
    for record in records:
        out.write(record.csv_line())
        count += 1
    return count


def parse_csv_text(text: str) -> list[CdrRecord]:
    """Parse a whole CSV document held in memory (small files and tests)."""
    return [record_from_fields(row) for _, row in iter_csv_rows(io.StringIO(text, newline=""))]
