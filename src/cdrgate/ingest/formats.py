"""The file formats ``import`` reads, in one registry: each format's columns (whose first two
names recognise its header row), its row parser, and its reading rules."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from cdrgate import cdr
from cdrgate.cdr import CdrRecord
from cdrgate.ingest import asterisk, freeswitch
from cdrgate.ingest.profile import SourceProfile

# A row's record and its timestart as wall-clock seconds (parsed once, stored as is).
Parsed = tuple[CdrRecord, int]
# A row's fields -> Parsed, None for a header row; ValueError when malformed.
RowMapper = Callable[[Sequence[str]], Parsed | None]


class Format(StrEnum):
    yeastar = "yeastar"
    asterisk = "asterisk"  # cdr_csv Master.csv
    freeswitch = "freeswitch"  # mod_cdr_csv, default template


@dataclass(frozen=True)
class FormatSpec:
    title: str  # "an Asterisk cdr_csv file", for hints
    columns: tuple[str, ...]
    widths: tuple[int, ...]  # column counts a row may have (a header of another is a bad row)
    parse: Callable[[Sequence[str], SourceProfile], Parsed]
    looks_like_row: Callable[[Sequence[str]], bool]
    # Yeastar files quote line breaks inside fields, and a device export is all or nothing;
    # cdr_csv and mod_cdr_csv write one record per physical line, each on its own.
    multiline: bool = False
    always_strict: bool = False


def _yeastar_parse(fields: Sequence[str], _profile: SourceProfile) -> Parsed:
    return cdr.parse_fields(fields)  # a Yeastar row names its own serial


def _yeastar_looks_like(fields: Sequence[str]) -> bool:
    try:
        cdr.parse_fields(fields)
    except ValueError:
        return False
    return True


FORMATS: dict[Format, FormatSpec] = {
    Format.yeastar: FormatSpec(
        "a Yeastar CDR file",
        cdr.CSV_COLUMNS,
        (len(cdr.CSV_COLUMNS),),
        _yeastar_parse,
        _yeastar_looks_like,
        multiline=True,
        always_strict=True,
    ),
    Format.asterisk: FormatSpec(
        "an Asterisk cdr_csv file",
        asterisk.COLUMNS,
        asterisk.WIDTHS,
        asterisk.record_from_fields,
        asterisk.looks_like_row,
    ),
    Format.freeswitch: FormatSpec(
        "a FreeSWITCH mod_cdr_csv file",
        freeswitch.COLUMNS,
        (len(freeswitch.COLUMNS),),
        freeswitch.record_from_fields,
        freeswitch.looks_like_row,
    ),
}


def is_header(spec: FormatSpec, fields: Sequence[str]) -> bool:
    return len(fields) in spec.widths and cdr.is_header(fields, spec.columns)


def _reordered_header(spec: FormatSpec, fields: Sequence[str]) -> bool:
    """A row holding most of the format's column names, not as its header does: a file
    exported with its columns rearranged, whose header would else be blamed for its "time"."""
    names = {field.lstrip("\ufeff").strip().lower() for field in fields}
    return len(names & set(spec.columns)) > len(spec.columns) // 2


def row_mapper(fmt: Format, profile: SourceProfile) -> RowMapper:
    spec = FORMATS[fmt]

    def mapper(fields: Sequence[str]) -> Parsed | None:
        try:
            return spec.parse(fields, profile)
        except ValueError:
            # Asked only now, as a header never parses (its time column holds a name): a
            # header holds no call, and may recur in files joined together.
            if is_header(spec, fields):
                return None
            if _reordered_header(spec, fields):
                raise ValueError(
                    "a header naming the columns in another order; cdrgate reads "
                    f"{spec.title} in its own order only: {','.join(spec.columns)}"
                ) from None
            raise

    return mapper


def format_hint(fmt: Format, fields: Sequence[str]) -> str:
    """A hint such as " (...: try --format X)" when a row ``fmt`` refused fits another format."""
    for other, spec in FORMATS.items():
        if other is fmt:
            continue
        if is_header(spec, fields) or spec.looks_like_row(fields):
            return f" (this looks like {spec.title}: try --format {other.value})"
    return ""
