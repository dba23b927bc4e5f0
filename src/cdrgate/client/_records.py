"""The SDK's typed CDR and the header-keyed CSV reading that produces it.

The device's CSV is read by column *name* (``cdr.CSV_COLUMNS``), never by position, so a
firmware that reorders or adds columns does not silently shift values into the wrong field.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from cdrgate.cdr import CSV_COLUMNS
from cdrgate.client._errors import ProtocolError
from cdrgate.timefmt import TIME_FORMAT, parse_pbx_time, to_datetime


class Cdr(NamedTuple):
    """One call detail record, typed. Field names are the CSV's (Yeastar's spellings).

    Times are naive datetimes in the PBX's local wall-clock time (the device sends no zone);
    durations are whole seconds; optional text that the device leaves empty is None.
    """

    callid: str
    timestart: datetime
    callfrom: str | None
    callto: str | None
    callduraction: int
    talkduraction: int
    srctrunkname: str | None
    dsttrunkname: str | None
    status: str | None
    type: str | None
    pincode: str | None
    recording: str | None
    didnumber: str | None
    sn: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping (times in ISO 8601, empty values as null)."""
        data = self._asdict()
        data["timestart"] = self.timestart.isoformat()
        return data

    def csv_fields(self) -> list[str]:
        """The record as the device writes it (for re-export)."""
        return [_render(value) for value in self]


def _render(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime(TIME_FORMAT)
    return str(value)


def _required(name: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if not text:
            raise ValueError(f"{name} is empty")
        return text

    return convert


def _optional(text: str) -> str | None:
    return text or None


def _seconds(text: str) -> int:
    if not text.isdigit() or not text.isascii():
        raise ValueError(f"not a whole number of seconds: {text!r}")
    return int(text)


def _time(text: str) -> datetime:
    return to_datetime(parse_pbx_time(text))


_CONVERT: dict[str, Callable[[str], Any]] = {
    "callid": _required("callid"),
    "timestart": _time,
    "callduraction": _seconds,
    "talkduraction": _seconds,
    "sn": _required("sn"),
}
if Cdr._fields != CSV_COLUMNS:  # pragma: no cover - fails at import if the layouts drift
    raise RuntimeError("client Cdr fields differ from cdr.CSV_COLUMNS")


def cdr_from_fields(fields: Sequence[str]) -> Cdr:
    """A typed record from 14 fields in ``CSV_COLUMNS`` order; ValueError if a value is bad."""
    values = []
    for name, text in zip(CSV_COLUMNS, fields, strict=True):
        try:
            values.append(_CONVERT.get(name, _optional)(text.strip()))
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return Cdr(*values)


class ColumnMap:
    """Where each of ``CSV_COLUMNS`` sits in one file, learned from its header row."""

    def __init__(self, header: Sequence[str]) -> None:
        names = [cell.lstrip("\ufeff").strip().lower() for cell in header]
        missing = [name for name in CSV_COLUMNS if name not in names]
        if missing:
            raise ProtocolError(f"CDR file lacks column(s): {', '.join(missing)}")
        self.positions = [names.index(name) for name in CSV_COLUMNS]
        self.width = len(names)

    @classmethod
    def default(cls) -> ColumnMap:
        return cls(CSV_COLUMNS)

    def order(self, row: Sequence[str]) -> list[str]:
        """The row's fields in ``CSV_COLUMNS`` order."""
        if len(row) != self.width:
            raise ValueError(f"expected {self.width} columns, found {len(row)}")
        return [row[position] for position in self.positions]


def is_header(row: Sequence[str]) -> bool:
    return bool(row) and row[0].lstrip("\ufeff").strip().lower() == CSV_COLUMNS[0]


def iter_ordered_rows(lines: Iterable[str]) -> Iterator[list[str]]:
    """Rows of one downloaded CSV (text lines) in ``CSV_COLUMNS`` order; header optional.

    A malformed row raises :class:`ProtocolError` naming its line.
    """
    reader = csv.reader(lines, strict=True)
    columns: ColumnMap | None = None
    try:
        for row in reader:
            if not row:
                continue
            if columns is None:
                columns = ColumnMap(row) if is_header(row) else ColumnMap.default()
                if is_header(row):
                    continue
            yield columns.order(row)
    except (csv.Error, ValueError) as exc:
        raise ProtocolError(f"bad CDR file, line {reader.line_num}: {exc}") from None
