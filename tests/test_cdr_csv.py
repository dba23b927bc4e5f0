"""The CSV writer and reader: device-identical plain rows, RFC 4180 where needed."""

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdrgate.cdr import CSV_COLUMNS, iter_csv_rows, parse_csv_text, record_from_fields, write_csv
from tests.conftest import make_cdr

SAMPLE = (
    "callid,timestart,callfrom,callto,callduraction,talkduraction,srctrunkname,dsttrunkname,"
    "status,type,pincode,recording,didnumber,sn\n"
    "1589299528.4,2020-05-12 17:05:28,966024422,110,42,34,MEO,,ANSWERED,Inbound,,,,369392534749\n"
)


def test_the_device_sample_round_trips_byte_for_byte():
    records = parse_csv_text(SAMPLE)
    out = io.StringIO()
    write_csv(records, out)
    assert out.getvalue() == SAMPLE
    assert records[0].callduraction == 42 and records[0].srctrunkname == "MEO"


def test_fourteen_columns_in_yeastar_spelling():
    assert len(CSV_COLUMNS) == 14
    assert CSV_COLUMNS[4:6] == ("callduraction", "talkduraction")


text_field = st.text(st.characters(blacklist_categories=["Cs"]), max_size=20)


@given(
    callfrom=text_field, callto=text_field, trunk=text_field, recording=text_field, sn=text_field
)
def test_any_text_survives_write_then_read(callfrom, callto, trunk, recording, sn):
    record = make_cdr(
        callfrom=callfrom, callto=callto, srctrunkname=trunk, recording=recording, sn=sn
    )
    out = io.StringIO()
    write_csv([record], out)
    [parsed] = parse_csv_text(out.getvalue())
    expected = record._replace(
        **{
            f: getattr(record, f).replace("\x00", "")
            for f in ("callfrom", "callto", "srctrunkname", "recording", "sn")
        }
    )
    assert parsed == expected


def test_crlf_files_and_a_bom_are_accepted():
    text = "\ufeff" + SAMPLE.replace("\n", "\r\n")
    assert parse_csv_text(text)[0].sn == "369392534749"


def test_header_is_optional():
    assert len(parse_csv_text(SAMPLE.split("\n", 1)[1])) == 1


def test_line_numbers_point_at_the_start_of_each_row():
    text = (
        SAMPLE
        + '1,2020-05-12 17:05:29,"multi\nline",110,1,1,,,ANSWERED,Inbound,,,,1\n'
        + SAMPLE.split("\n")[1]
        + "\n"
    )
    assert [line for line, _ in iter_csv_rows(io.StringIO(text, newline=""))] == [2, 3, 5]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (["1"] * 13, "expected 14 columns"),
        (["", "2020-05-12 17:05:28", "1", "2", "3", "4", "", "", "", "", "", "", "", ""], "callid"),
        (["1", "12/05/2020", "1", "2", "3", "4", "", "", "", "", "", "", "", ""], "time"),
        (
            ["1", "2020-05-12 17:05:28", "1", "2", "-3", "4", "", "", "", "", "", "", "", ""],
            "callduraction",
        ),
        (
            ["1", "2020-05-12 17:05:28", "1", "2", "3", "4s", "", "", "", "", "", "", "", ""],
            "talkduraction",
        ),
    ],
)
def test_bad_rows_say_what_is_wrong(fields, message):
    with pytest.raises(ValueError, match=message):
        record_from_fields(fields)
