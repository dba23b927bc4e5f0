"""cdrgate import --format yeastar: round trips, duplicates, all-or-nothing files."""

from __future__ import annotations

import pytest

from cdrgate.cdr import CSV_HEADER
from cdrgate.errors import ImportFailed
from cdrgate.ingest.files import ImportResult, import_file
from cdrgate.ingest.formats import Format
from cdrgate.ingest.profile import SourceProfile
from cdrgate.storage import cdrs, schema
from tests.conftest import make_cdr


def import_yeastar_csv(db, path) -> ImportResult:
    with open(path, "rb") as stream:
        return import_file(
            db, str(path), stream, Format.yeastar, SourceProfile("yeastar"), report=print
        )


START, END = "2026-05-01 00:00:00", "2026-05-31 23:59:59"


def test_a_download_reimports_identically(flow, add_cdrs, tmp_path, make_db):
    add_cdrs(
        make_cdr(callid="1", callfrom='Q "quoted", comma'),
        make_cdr(callid="2", timestart="2026-05-28 11:00:00", recording="multi\r\nline"),
        make_cdr(callid="3", timestart="2026-05-28 12:00:00", didnumber="Zürich ☎"),
    )
    original = flow.download(flow.token()).content
    path = tmp_path / "export.csv"
    path.write_bytes(original)

    other = make_db(f"sqlite:///{tmp_path / 'other.db'}")
    schema.upgrade(other)
    result = import_yeastar_csv(other, path)
    assert (result.rows, result.inserted) == (3, 3)
    with other.read() as conn:
        lines = cdrs.read_lines(conn, cdrs.CdrQuery(0, 2**40))
    assert (CSV_HEADER + "".join(lines)).encode() == original


def test_importing_the_same_file_twice_adds_nothing(db, tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(CSV_HEADER + make_cdr(callid="1").csv_line() + make_cdr(callid="2").csv_line())
    assert import_yeastar_csv(db, path).inserted == 2
    again = import_yeastar_csv(db, path)
    assert (again.rows, again.inserted, again.duplicates) == (2, 0, 2)


def test_same_callid_from_another_pbx_is_a_different_cdr(db, tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(make_cdr(sn="A").csv_line() + make_cdr(sn="B").csv_line())
    assert import_yeastar_csv(db, path).inserted == 2


def test_a_bad_row_names_file_and_line_and_imports_nothing(db, tmp_path):
    good = make_cdr(callid="ok").csv_line()
    bad = make_cdr(callid="bad", timestart="2026-02-30 00:00:00").csv_line()
    path = tmp_path / "broken.csv"
    path.write_text(CSV_HEADER + good + good.replace("ok", "ok2") + bad)
    with pytest.raises(ImportFailed) as failure:
        import_yeastar_csv(db, path)
    assert failure.value.line == 4 and failure.value.source == str(path)
    with db.read() as conn:
        assert cdrs.count(conn) == 0


def test_a_file_that_is_not_utf8_is_refused_cleanly(db, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(
        CSV_HEADER.encode() + make_cdr(callfrom="Z\xfcrich").csv_line().encode("latin-1")
    )
    with pytest.raises(ImportFailed, match="UTF-8"):
        import_yeastar_csv(db, path)


def test_bad_utf8_is_reported_at_its_own_line_past_the_decoders_read_ahead(db, tmp_path):
    # 400 rows are ~40 KB: a chunked decoder fails while still handing out the first rows.
    rows = [make_cdr(callid=str(n)).csv_line().encode() for n in range(400)]
    rows[300] = make_cdr(callid="bad", callfrom="Z\xfcrich").csv_line().encode("latin-1")
    path = tmp_path / "latin1.csv"
    path.write_bytes(CSV_HEADER.encode() + b"".join(rows))
    with pytest.raises(ImportFailed, match="UTF-8") as failure:
        import_yeastar_csv(db, path)
    assert failure.value.line == 302  # the header is line 1


def test_bad_utf8_after_a_multiline_field_is_reported_at_its_physical_line(db, tmp_path):
    first = make_cdr(callid="1", recording="two\nlines").csv_line().encode()
    bad = make_cdr(callid="2", callfrom="Z\xfcrich").csv_line().encode("latin-1")
    path = tmp_path / "latin1.csv"
    path.write_bytes(CSV_HEADER.encode() + first + bad)
    with pytest.raises(ImportFailed) as failure:
        import_yeastar_csv(db, path)
    assert failure.value.line == 4


@pytest.mark.parametrize("duration", [str(2**63), str(2**31), "9" * 5000])
def test_a_duration_the_database_cannot_hold_is_refused_by_line(db, tmp_path, duration):
    good = make_cdr(callid="ok").csv_line()
    hostile = make_cdr(callid="big").csv_line().replace(",42,", f",{duration},", 1)
    path = tmp_path / "hostile.csv"
    path.write_text(CSV_HEADER + good + hostile)
    with pytest.raises(ImportFailed, match="callduraction is out of range") as failure:
        import_yeastar_csv(db, path)
    assert failure.value.line == 3
    assert len(str(failure.value)) < 200  # a 5000-digit value is not echoed whole


def test_the_largest_valid_duration_is_stored(db, tmp_path):
    row = make_cdr(callid="max").csv_line().replace(",42,", f",{2**31 - 1},", 1)
    path = tmp_path / "max.csv"
    path.write_text(CSV_HEADER + row)
    assert import_yeastar_csv(db, path).inserted == 1
