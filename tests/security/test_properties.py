"""Hypothesis properties of the parsers and writers that meet hostile input: PBX times,
extension lists, the CSV writer/reader pair (and csv-safe), and URL decoding of links."""

from __future__ import annotations

import csv
import io
import itertools
import string
from datetime import datetime
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cdrgate.cdr import CSV_COLUMNS, CdrRecord, parse_csv_text, write_csv
from cdrgate.csvsafe import safe_line
from cdrgate.errors import ApiError, Errno
from cdrgate.services.downloads import normalise_selector
from cdrgate.timefmt import TIME_FORMAT, format_pbx_time, parse_pbx_time
from tests.conftest import Flow, make_cdr

DB_EXAMPLES = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# ---- PBX times -----------------------------------------------------------------------------


def pbx(moment: datetime) -> str:
    # isoformat zero-pads years before 1000; strftime's %Y does not on glibc.
    return moment.isoformat(sep=" ", timespec="seconds")


times = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59))


@given(times)
def test_every_real_time_round_trips_through_the_pbx_format(moment):
    text = pbx(moment)
    assert format_pbx_time(parse_pbx_time(text)) == text


@given(times, times)
def test_wall_clock_seconds_keep_the_order_of_times(a, b):
    ta, tb = parse_pbx_time(pbx(a)), parse_pbx_time(pbx(b))
    assert (ta < tb) == (a < b)


@given(st.text())
def test_any_text_is_a_time_or_a_value_error(text):
    try:
        seconds = parse_pbx_time(text)
    except ValueError:
        return
    assert format_pbx_time(seconds) == text.strip()


@given(st.from_regex(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", fullmatch=True))
def test_well_shaped_but_impossible_times_are_refused_not_wrapped(text):
    # \d also generates other scripts' digits: the PBX format is ASCII only.
    try:
        datetime.strptime(text, TIME_FORMAT)
        valid = text.isascii()
    except ValueError:
        valid = False
    if valid:
        assert format_pbx_time(parse_pbx_time(text)) == text
    else:
        with pytest.raises(ValueError):
            parse_pbx_time(text)


# ---- extension lists ------------------------------------------------------------------------

extensions = st.text(alphabet=string.digits + "*#+", min_size=1, max_size=8)
spaces = st.text(alphabet=" \t", max_size=2)


@given(st.lists(st.tuples(spaces, extensions, spaces), min_size=1, max_size=30))
def test_extension_lists_normalise_to_the_unique_extensions_in_order(parts):
    raw = ",".join(f"{before}{ext}{after}" for before, ext, after in parts)
    expected = list(dict.fromkeys(ext for _, ext, _ in parts))
    assert normalise_selector(raw).split(",") == expected


@given(st.text())
def test_any_selector_is_normalised_idempotently_or_refused_with_10004(raw):
    try:
        normal = normalise_selector(raw)
    except ApiError as exc:
        assert exc.errno == Errno.PARAMETER_EMPTY
        return
    assert normalise_selector(normal) == normal
    assert "" not in normal.split(",")


@given(st.sampled_from(["all", "ALL", "All", " all ", "aLl"]))
def test_all_is_case_and_space_insensitive(raw):
    assert normalise_selector(raw) == "all"


# ---- CSV writer/reader ----------------------------------------------------------------------

hostile_text = st.text(
    alphabet=st.one_of(
        st.sampled_from([",", '"', "\r", "\n", "\x00", "=", "+", "-", "@", " ", "\ufeff"]),
        st.characters(codec="utf-8"),
    ),
    max_size=20,
)


@st.composite
def records(draw, callid=None):
    text_fields = {
        name: draw(hostile_text)
        for name in CSV_COLUMNS
        if name not in ("callid", "timestart", "callduraction", "talkduraction")
    }
    return CdrRecord(
        callid=callid or draw(hostile_text.filter(lambda s: s.replace("\x00", ""))),
        timestart=pbx(draw(times)),
        callduraction=draw(st.integers(0, 10**7)),
        talkduraction=draw(st.integers(0, 10**7)),
        **text_fields,
    )


def stored_form(record: CdrRecord) -> CdrRecord:
    # NUL is dropped on ingest by design (PostgreSQL text cannot hold it); nothing else changes.
    stripped: dict[str, Any] = {
        name: value.replace("\x00", "")
        for name, value in record._asdict().items()
        if isinstance(value, str)
    }
    return record._replace(**stripped)


@given(st.lists(records(), max_size=5))
def test_any_unicode_record_survives_the_csv_writer_and_reader(batch):
    out = io.StringIO()
    write_csv(batch, out)
    assert parse_csv_text(out.getvalue()) == [stored_form(r) for r in batch]


# What a spreadsheet evaluates, written out independently of csvsafe's patterns.
_FORMULA = set("=+-@\uff1d\uff0b\uff0d\uff20")
_SKIPPED = " \t\r\n\u00a0\u3000" + "".join(chr(c) for c in range(0x2000, 0x200C))


def _evaluated(cell: str) -> bool:
    return cell[:1] in ("\t", "\r") or cell.lstrip(_SKIPPED)[:1] in _FORMULA


@given(records())
def test_csv_safe_output_has_no_formula_cells_and_keeps_the_text(record):
    line = safe_line(record.csv_line())
    cells = next(csv.reader(io.StringIO(line, newline="")))
    originals = record.csv_fields()
    assert len(cells) == len(originals)
    for cell, original in zip(cells, originals, strict=True):
        assert not _evaluated(cell)
        if _evaluated(original):
            assert cell == "'" + original
        else:
            assert cell == original


@given(records())
def test_a_line_with_no_formula_cell_is_left_byte_identical_by_csv_safe(record):
    assume(not any(_evaluated(field) for field in record.csv_fields()))
    assert safe_line(record.csv_line()) == record.csv_line()


def test_stored_records_download_exactly_as_written(make_client, api_account, add_cdrs):
    """Through the database and the API: what comes out parses back to what went in."""
    flow = Flow(make_client())
    token = flow.token()
    seconds = itertools.count(parse_pbx_time("2026-05-02 00:00:00"))

    @DB_EXAMPLES
    @given(record=records())
    def round_trip(record):
        # Each example gets its own second and serial (hypothesis replays examples while
        # shrinking; a replay must not be skipped as a duplicate of an earlier one).
        second = next(seconds)
        record = record._replace(timestart=format_pbx_time(second), sn=f"{record.sn}#{second}")
        add_cdrs(record)
        at = record.timestart
        response = flow.download(token, ext="all", start=at, end=at)
        assert response.headers["content-type"].startswith("text/csv")
        assert parse_csv_text(response.text) == [stored_form(record)]

    round_trip()


# ---- URL decoding of download links ---------------------------------------------------------


def _encode(value: str, style: str) -> str:
    if style == "raw-colon":  # what the docs and most clients send: %20, ':' and ',' raw
        return quote(value, safe=":,")
    if style == "plus":  # form encoding: '+' for spaces
        return quote(value, safe=":,").replace("%20", "+")
    return quote(value, safe="")  # everything escaped: %20 %3A %2C


def test_every_seen_link_encoding_decodes_to_the_same_filter(make_client, api_account, add_cdrs):
    add_cdrs(make_cdr(callid="url.1"))
    http = make_client()
    token = Flow(http).token()

    @DB_EXAMPLES
    @given(
        # Every list names the CDR's caller or callee (1001 alone would match nothing).
        exts=st.lists(
            st.sampled_from(["1000", "1001", "0215550100"]), min_size=1, max_size=3
        ).filter(lambda exts: set(exts) != {"1001"}),
        style=st.sampled_from(["raw-colon", "plus", "escaped"]),
        version=st.sampled_from(["v1.1.0", "v2.0.0"]),
    )
    def decode(exts, style, version):
        flow = Flow(http, version)
        start, end, ext = "2026-05-01 00:00:00", "2026-05-31 23:59:59", ",".join(exts)
        random = flow.get_random(token, ext, start, end)["random"]
        link = (
            f"{flow.url('cdr/download')}?{flow.selector}={_encode(ext, style)}"
            f"&starttime={_encode(start, style)}&endtime={_encode(end, style)}"
            f"&token={token}&random={random}"
        )
        response = http.get(link)
        assert response.headers["content-type"].startswith("text/csv"), response.text
        assert "url.1" in response.text

    decode()


def test_arbitrary_link_parameters_get_an_envelope_never_a_crash(make_client):
    http = make_client()
    names = st.sampled_from(["extid", "number", "starttime", "endtime", "token", "random"])

    @DB_EXAMPLES
    @given(params=st.dictionaries(names, st.text(), max_size=6))
    def probe(params):
        query = "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in params.items())
        response = http.get(f"/api/v1.1.0/cdr/download?{query}")
        assert response.status_code == 200
        answer = response.json()
        assert answer["status"] == "Failed"
        assert answer["errno"] in {e.value for e in Errno} - {Errno.APISRV_DOWN.value}

    probe()
