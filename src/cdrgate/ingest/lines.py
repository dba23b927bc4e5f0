"""Reading CSV files into rows, with the line number every report names.

Bytes are decoded one physical line at a time, so text that is not UTF-8 is reported at its
own line (a decoder reading ahead in chunks would blame an earlier one). A line that cannot
be read or mapped becomes a :class:`Rejected`; blank lines carry no call and are passed over.
"""

from __future__ import annotations

import csv
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from cdrgate.cdr import CsvRowError, iter_csv_rows
from cdrgate.errors import ImportFailed
from cdrgate.ingest.formats import Parsed, RowMapper


class Rejected(NamedTuple):
    source: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.reason}"


def check_file(path: Path) -> bool:
    """Whether ``path`` exists; ImportFailed when it names something that is not a regular
    file. Asked before it is opened: opening a FIFO no one writes to blocks for ever (even
    SIGTERM only sets a flag then), and a directory cannot be read as lines."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise ImportFailed(str(path), None, exc.strerror or str(exc)) from None
    if stat.S_ISREG(mode):
        return True
    if stat.S_ISDIR(mode):
        raise ImportFailed(str(path), None, "is a directory, not a CDR file")
    raise ImportFailed(
        str(path), None, "is not a regular file (a pipe or device); feed it on stdin: - < FILE"
    )


# Said of a file's first line when it is gzip data, and the whole file refused for it: its
# "lines" are compressed bytes, each another malformed line to report otherwise.
GZIP = "gzip-compressed, not CSV text: decompress it first (zcat FILE | cdrgate import -)"


def decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if raw.startswith(b"\x1f\x8b"):  # gzip's magic number: a rotated log, compressed
            raise ValueError(GZIP) from None
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
    breaks (Yeastar). Raises :class:`CsvRowError` for text that cannot be read."""
    return iter_csv_rows(_decoded(stream))


def _decoded(stream: Iterable[bytes]) -> Iterator[str]:
    for number, raw in enumerate(stream, start=1):
        try:
            text = decode(raw)
        except ValueError as exc:
            raise CsvRowError(number, str(exc)) from None
        yield text.removeprefix("\ufeff") if number == 1 else text
