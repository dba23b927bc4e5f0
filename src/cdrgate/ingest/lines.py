"""Reading CSV files into rows, with the line number every report names.

Bytes are decoded one physical line at a time, so text that is not UTF-8 is reported at its
own line (a decoder reading ahead in chunks would blame an earlier one). A line that cannot
be read or mapped becomes a :class:`Rejected`; blank lines carry no call and are passed over.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from cdrgate.ingest.formats import Parsed, RowMapper


class Rejected(NamedTuple):
    source: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.reason}"


class BadRow(ValueError):
    """Row reading cannot go on past ``line`` (a multi-line reader has lost its place)."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


def decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason})") from None


def split_line(raw: bytes) -> list[str] | None:
    """One physical line (without its line end) -> its fields; None for a blank line.

    ValueError for anything malformed, including a quoted field left open (cdr_csv and
    mod_cdr_csv never write a line break in a field).
    """
    text = decode(raw).removesuffix("\r")
    if not text.strip():
        return None
    try:
        rows = list(csv.reader([text], strict=True))
    except csv.Error as exc:
        raise ValueError(f"malformed CSV: {exc}") from None
    if len(rows) != 1:
        raise ValueError("malformed CSV: unterminated quoted field")
    return rows[0]


def parse_line(raw: bytes, mapper: RowMapper) -> Parsed | None:
    """One physical line -> its record, or None for a blank or header line."""
    fields = split_line(raw)
    return None if fields is None else mapper(fields)


def multiline_rows(stream: Iterable[bytes]) -> Iterator[tuple[int, list[str]]]:
    """``(line where the row starts, fields)`` for a CSV whose quoted fields may hold line
    breaks; a UTF-8 BOM is ignored. Raises :class:`BadRow` for text that cannot be read."""
    lines = _decoded(stream)
    reader = csv.reader(lines, strict=True)
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise BadRow(reader.line_num, f"malformed CSV: {exc}") from None
        line, start = start, reader.line_num + 1
        if row:
            yield line, row


def _decoded(stream: Iterable[bytes]) -> Iterator[str]:
    for number, raw in enumerate(stream, start=1):
        try:
            text = decode(raw)
        except ValueError as exc:
            raise BadRow(number, str(exc)) from None
        yield text.removeprefix("\ufeff") if number == 1 else text
