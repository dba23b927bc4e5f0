"""One CSV line at a time: the formats ``import`` knows, and the malformed-line rule.

A line that cannot be mapped becomes a :class:`Rejected` carrying its line number and the
reason; callers report it and go on (or stop, with ``--strict``). Blank lines carry no call
and are passed over.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import NamedTuple

from cdrgate import cdr
from cdrgate.cdr import CdrRecord
from cdrgate.ingest.profile import SourceProfile

# A row's fields -> its record, None for a header row; ValueError when malformed.
RowMapper = Callable[[Sequence[str]], CdrRecord | None]


class Format(StrEnum):
    yeastar = "yeastar"
    asterisk = "asterisk"
    freeswitch = "freeswitch"


class Rejected(NamedTuple):
    source: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.reason}"


def seconds(name: str, text: str) -> int:
    text = text.strip()
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"{name} is not a whole number of seconds: {text!r}")
    return int(text)


def row_mapper(fmt: Format, profile: SourceProfile) -> RowMapper:
    # Imported here: asterisk/freeswitch import this module for ``seconds``.
    from cdrgate.ingest import asterisk, freeswitch

    if fmt is Format.asterisk:
        return lambda f: None if asterisk.is_header(f) else asterisk.record_from_fields(f, profile)
    if fmt is Format.freeswitch:
        return lambda f: (
            None if freeswitch.is_header(f) else freeswitch.record_from_fields(f, profile)
        )
    return _yeastar_row


def _yeastar_row(fields: Sequence[str]) -> CdrRecord | None:
    if fields and fields[0].lstrip("\ufeff").strip().lower() == "callid":
        return None
    return cdr.record_from_fields(fields)


def parse_line(raw: bytes, mapper: RowMapper) -> CdrRecord | None:
    """One physical line (without its line end) -> record, or None for blank/header lines.

    ValueError (with a readable reason) for anything malformed, including bad UTF-8 and a
    quoted field left open (cdr_csv and mod_cdr_csv never write a line break in a field).
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason})") from None
    text = text.removesuffix("\r")
    if not text.strip():
        return None
    try:
        rows = list(csv.reader([text], strict=True))
    except csv.Error as exc:
        raise ValueError(f"malformed CSV: {exc}") from None
    if len(rows) != 1:
        raise ValueError("malformed CSV: unterminated quoted field")
    return mapper(rows[0])
