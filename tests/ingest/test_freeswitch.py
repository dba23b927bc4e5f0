"""cdrgate import --format freeswitch: mod_cdr_csv (default template) rows mapped."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cdrgate.cli import app
from cdrgate.ingest.freeswitch import COLUMNS as FS_COLUMNS
from cdrgate.ingest.freeswitch import status_from
from tests.ingest.conftest import freeswitch_line, stored_lines

runner = CliRunner()


def imported(db, tmp_path, *lines: str | bytes, args: tuple[str, ...] = ()):
    path = tmp_path / "Master.csv"
    path.write_bytes(
        b"".join((ln if isinstance(ln, bytes) else ln.encode()) + b"\n" for ln in lines)
    )
    result = runner.invoke(
        app, ["import", "--format", "freeswitch", *args, str(path), "--database", db.url]
    )
    return result, stored_lines(db)


def test_calls_map_to_yeastar_rows_with_the_format_as_default_serial(db, tmp_path):
    result, lines = imported(
        db, tmp_path,
        freeswitch_line(),
        freeswitch_line(caller_id_number="1000", destination_number="0041445550100",
                        context="default", start_stamp="2026-05-28 11:00:00", answer_stamp="",
                        duration="25", billsec="0", hangup_cause="NO_ANSWER", uuid="u-2"),
        freeswitch_line(caller_id_number="1000", destination_number="1001", context="default",
                        start_stamp="2026-05-28 12:00:00", answer_stamp="", duration="2",
                        billsec="0", hangup_cause="USER_BUSY", uuid="u-3"),
        args=("--trunk-name", "fs-gw"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert lines == [
        "4f5e8c1a-6b4d-4c2e-9d8e-0a1b2c3d4e5f,2026-05-28 10:00:00,0215550100,1000,60,55,fs-gw,,"
        "ANSWERED,Inbound,,,,freeswitch",
        "u-2,2026-05-28 11:00:00,1000,0041445550100,25,0,,fs-gw,NO ANSWER,Outbound,,,,freeswitch",
        "u-3,2026-05-28 12:00:00,1000,1001,2,0,,,BUSY,Internal,,,,freeswitch",
    ]


@pytest.mark.parametrize(
    ("billsec", "answer", "cause", "status"),
    [(55, "2026-05-28 10:00:05", "NORMAL_CLEARING", "ANSWERED"),
     (0, "2026-05-28 10:00:05", "NORMAL_CLEARING", "ANSWERED"),  # answered, hung up at once
     (0, "", "USER_BUSY", "BUSY"),
     (0, "", "NO_ANSWER", "NO ANSWER"),
     (0, "", "ORIGINATOR_CANCEL", "NO ANSWER"),
     (0, "", "CALL_REJECTED", "FAILED"),
     (0, "", "UNALLOCATED_NUMBER", "FAILED")],
)  # fmt: skip
def test_status_from_billsec_and_hangup_cause(billsec, answer, cause, status):
    assert status_from(billsec, answer, cause) == status


def test_malformed_lines_are_reported_and_skipped(db, tmp_path):
    result, lines = imported(
        db, tmp_path,
        '"caller_id_name","caller_id_number"',  # 2 columns: a custom template, not ours
        freeswitch_line(billsec="-1"),
        b'"Bob","\xff\xfe"',  # not UTF-8
        freeswitch_line(uuid="ok"),
    )  # fmt: skip
    assert result.exit_code == 1
    assert ":1: expected 15 columns, found 2" in result.stderr
    assert ":2: billsec is not a whole number" in result.stderr
    assert ":3: not UTF-8 text" in result.stderr
    assert [line.split(",")[0] for line in lines] == ["ok"]


def test_a_freeswitch_file_imported_as_asterisk_suggests_the_format(db, tmp_path):
    path = tmp_path / "Master.csv"
    path.write_text(freeswitch_line() + "\n")
    result = runner.invoke(app, ["import", "--format", "asterisk", str(path), "--database", db.url])
    assert result.exit_code == 1
    assert ":1: expected 16 to 18 columns, found 15" in result.stderr
    assert "try --format freeswitch" in result.stderr


def test_a_header_row_of_another_format_is_named_in_the_hint(db, tmp_path):
    path = tmp_path / "cdr.csv"
    path.write_text(",".join(f'"{name}"' for name in FS_COLUMNS) + "\n")
    result = runner.invoke(app, ["import", str(path), "--database", db.url])
    assert result.exit_code == 1 and "try --format freeswitch" in result.stderr
