"""csv_safe: off by default (device bytes, `+41…` intact); on, formula cells are neutralised."""

from __future__ import annotations

import pytest

from cdrgate.cdr import CSV_HEADER, parse_csv_text
from cdrgate.csvsafe import neutralise, safe_line
from tests.conftest import Flow, make_cdr

HOSTILE = make_cdr(
    callid="x.1",
    callfrom="+41445550100",
    callto='=HYPERLINK("http://evil.example","call")',
    srctrunkname="-2+3",
    dsttrunkname="@SUM(A1)",
    recording="rec,with=comma.wav",
)
PLAIN = make_cdr(callid="x.2", timestart="2026-05-28 11:00:00")


def test_by_default_the_download_is_byte_identical_to_the_device(client, add_cdrs):
    add_cdrs(HOSTILE, PLAIN)
    response = Flow(client).download(Flow(client).token())
    assert response.text == CSV_HEADER + HOSTILE.csv_line() + PLAIN.csv_line()
    assert ",+41445550100," in response.text


def test_csv_safe_neutralises_formula_cells_and_nothing_else(make_client, api_account, add_cdrs):
    add_cdrs(HOSTILE, PLAIN)
    flow = Flow(make_client(csv_safe=True))
    response = flow.download(flow.token())
    hostile, plain = parse_csv_text(response.text)
    assert hostile.callfrom == "'+41445550100"
    assert hostile.callto == '\'=HYPERLINK("http://evil.example","call")'
    assert hostile.srctrunkname == "'-2+3"
    assert hostile.dsttrunkname == "'@SUM(A1)"
    assert hostile.recording == "rec,with=comma.wav"  # '=' inside a cell is harmless
    assert (
        hostile._replace(
            callfrom=HOSTILE.callfrom,
            callto=HOSTILE.callto,
            srctrunkname=HOSTILE.srctrunkname,
            dsttrunkname=HOSTILE.dsttrunkname,
        )
        == HOSTILE
    )
    assert plain == PLAIN
    assert response.text.endswith(PLAIN.csv_line())  # clean rows keep their exact bytes


@pytest.mark.parametrize(
    "cell",
    [
        " =1+1",  # spreadsheets skip leading spaces before a formula
        "\n=1+1",
        "\u00a0@SUM(A1)",
        '\uff1dHYPERLINK("http://evil.example")',  # full-width =
        "\uff0b1",
        "\t-2",
        "\r+3",
        "\u3000=1",
    ],
)
def test_csv_safe_neutralises_formulas_behind_white_space_and_full_width_signs(cell):
    assert neutralise(cell) == "'" + cell
    line = make_cdr(callto=cell).csv_line()
    [row] = parse_csv_text(CSV_HEADER + safe_line(line))
    assert row.callto == "'" + cell


@pytest.mark.parametrize("cell", ["1000", "Zürich", "a=b", "rec-1.wav", " 1000", ""])
def test_csv_safe_leaves_harmless_cells_alone(cell):
    line = make_cdr(callto=cell).csv_line()
    assert safe_line(line) == line
