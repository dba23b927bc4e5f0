"""Typed records and header-keyed CSV reading."""

from __future__ import annotations

from datetime import datetime

import pytest

from cdrgate.cdr import CSV_COLUMNS
from cdrgate.client import Cdr, ProtocolError
from cdrgate.client._records import cdr_from_fields, iter_ordered_rows
from cdrgate.client._stream import CsvStream

ROW = "1589299528.4,2020-05-12 17:05:28,966024422,110,42,34,MEO,,ANSWERED,Inbound,,,,369392534749"


def test_record_fields_are_the_csv_columns():
    assert Cdr._fields == CSV_COLUMNS


def test_a_device_row_becomes_a_typed_record():
    cdr = cdr_from_fields(ROW.split(","))
    assert cdr.timestart == datetime(2020, 5, 12, 17, 5, 28)
    assert (cdr.callduraction, cdr.talkduraction) == (42, 34)
    assert (cdr.srctrunkname, cdr.dsttrunkname, cdr.pincode) == ("MEO", None, None)
    assert ",".join(cdr.csv_fields()) == ROW


def test_columns_are_found_by_header_name_not_position():
    header = list(CSV_COLUMNS)
    header[2], header[3] = header[3], header[2]  # callto before callfrom
    fields = ROW.split(",")
    fields[2], fields[3] = fields[3], fields[2]
    text = [",".join(header) + "\r\n", ",".join(fields) + "\r\n"]
    (row,) = iter_ordered_rows(text)
    assert cdr_from_fields(row).callfrom == "966024422"


def test_a_file_without_header_is_read_in_the_documented_order():
    assert [cdr_from_fields(r).callid for r in iter_ordered_rows([ROW + "\n"])] == ["1589299528.4"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("callid,timestart\n", "lacks column"),
        (ROW + ",surplus\n", "line 1"),
        ('"unterminated\n', "line"),
    ],
)
def test_a_malformed_file_is_a_protocol_error(text, message):
    with pytest.raises(ProtocolError, match=message):
        list(iter_ordered_rows([text]))


def test_bad_values_name_the_field():
    fields = ROW.split(",")
    fields[4] = "12:10:10 AM"
    with pytest.raises(ValueError, match="callduraction"):
        cdr_from_fields(fields)


def test_stream_keeps_raw_bytes_across_chunk_boundaries_and_strips_the_bom():
    body = ("\ufeff" + ",".join(CSV_COLUMNS) + "\n" + ROW + "\n" + ROW.replace(".4", ".5")).encode()
    chunks = [body[i : i + 7] for i in range(0, len(body), 7)]
    stream = CsvStream(chunks)
    raws = [raw for _fields, raw in stream]
    assert raws == [(ROW + "\n").encode(), (ROW.replace(".4", ".5") + "\n").encode()]
    assert stream.header == (",".join(CSV_COLUMNS) + "\n").encode()
