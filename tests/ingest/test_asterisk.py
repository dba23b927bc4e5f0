"""cdrgate import --format asterisk: cdr_csv Master.csv rows mapped onto the Yeastar fields."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cdrgate.cli import app
from cdrgate.ingest.asterisk import channel_peer, record_from_fields
from cdrgate.ingest.lines import Format, parse_line, row_mapper
from cdrgate.ingest.profile import SourceProfile
from tests.ingest.conftest import asterisk_line, stored_lines

runner = CliRunner()
PROFILE = SourceProfile.build("pbx-a")


def imported(db, tmp_path, *lines: str, args: tuple[str, ...] = ()):
    path = tmp_path / "Master.csv"
    path.write_text("".join(line + "\n" for line in lines))
    result = runner.invoke(
        app, ["import", "--format", "asterisk", "--sn", "pbx-a", *args, str(path),
              "--database", db.url],
    )  # fmt: skip
    return result, stored_lines(db)


def test_inbound_outbound_and_internal_calls_map_to_yeastar_rows(db, tmp_path):
    result, lines = imported(
        db, tmp_path,
        asterisk_line(),
        asterisk_line(src="1000", dst="0215550199", channel="PJSIP/1000-0000001c",
                      dstchannel="PJSIP/provider-0000001d", start="2026-05-28 11:00:00",
                      answer="", duration=20, billsec=0, disposition="NO ANSWER",
                      uniqueid="1779966000.27"),
        asterisk_line(src="1000", dst="1001", channel="PJSIP/1000-0000001e",
                      dstchannel="PJSIP/1001-0000001f", start="2026-05-28 12:00:00",
                      answer="", duration=3, billsec=0, disposition="BUSY",
                      uniqueid="1779969600.28"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "3 rows, 3 new" in result.stdout
    assert lines == [
        "1779962400.26,2026-05-28 10:00:00,0215550100,1000,60,55,provider,,ANSWERED,Inbound,,,,pbx-a",
        "1779966000.27,2026-05-28 11:00:00,1000,0215550199,20,0,,provider,NO ANSWER,Outbound,,,,pbx-a",
        "1779969600.28,2026-05-28 12:00:00,1000,1001,3,0,,,BUSY,Internal,,,,pbx-a",
    ]


@pytest.mark.parametrize(
    ("disposition", "status"),
    [("ANSWERED", "ANSWERED"), ("NO ANSWER", "NO ANSWER"), ("BUSY", "BUSY"),
     ("FAILED", "FAILED"), ("CONGESTION", "FAILED")],
)  # fmt: skip
def test_disposition_becomes_status(disposition, status):
    record = parse_line(
        asterisk_line(disposition=disposition).encode(), row_mapper(Format.asterisk, PROFILE)
    )
    assert record is not None and record.status == status


def test_without_uniqueid_a_stable_callid_makes_reimport_a_no_op(db, tmp_path):
    line = asterisk_line(uniqueid=None)
    first, lines = imported(db, tmp_path, line)
    again, lines_again = imported(db, tmp_path, line)
    assert "1 new" in first.stdout and "0 new, 1 already present" in again.stdout
    assert lines == lines_again and lines[0].startswith("csv-")


def test_a_trunk_pattern_decides_direction_by_channel_not_number():
    # A 4-digit external number would look like an extension; the channel says trunk.
    profile = SourceProfile.build("pbx-a", trunks=r"provider|telco-.*")
    fields = next(iter(__import__("csv").reader([asterisk_line(src="5550")])))
    record = record_from_fields(fields, profile)
    assert (record.type, record.srctrunkname) == ("Inbound", "provider")


@pytest.mark.parametrize(
    ("channel", "peer"),
    [("PJSIP/provider-0000001a", "provider"), ("SIP/telco-b-00ff", "telco-b"),
     ("Local/100@from-internal-00000003;2", "100@from-internal"), ("", "")],
)  # fmt: skip
def test_channel_peer_names(channel, peer):
    assert channel_peer(channel) == peer


def test_malformed_lines_are_reported_by_number_and_the_rest_imported(db, tmp_path):
    result, lines = imported(
        db, tmp_path,
        asterisk_line(),
        '"","1000","1001","unterminated',
        asterisk_line(uniqueid="2.2", duration="sixty"),
        "",
        asterisk_line(uniqueid="3.3", disposition="ON FIRE"),
        asterisk_line(uniqueid="4.4", start="28/05/2026 10:00"),
        asterisk_line(uniqueid="5.5"),
    )  # fmt: skip
    assert result.exit_code == 1  # skipped lines make the run fail visibly
    assert "2 rows, 2 new" in result.stdout and "4 malformed lines skipped" in result.stdout
    assert f"{tmp_path / 'Master.csv'}:2: malformed CSV" in result.stderr
    assert ":3: duration is not a whole number of seconds: 'sixty'" in result.stderr
    assert ":5: unknown disposition 'ON FIRE'" in result.stderr
    assert ":6: not a yyyy-mm-dd hh:mm:ss time" in result.stderr
    assert [line.split(",")[0] for line in lines] == ["1779962400.26", "5.5"]


def test_strict_refuses_the_whole_file_on_the_first_bad_line(db, tmp_path):
    result, lines = imported(
        db, tmp_path, asterisk_line(), asterisk_line(billsec="x"), args=("--strict",)
    )
    assert result.exit_code == 1
    assert (
        ":2: billsec is not a whole number" in result.stderr and "nothing imported" in result.stderr
    )
    assert lines == []


def test_a_bad_extension_pattern_is_a_usage_error(db, tmp_path):
    result, _ = imported(db, tmp_path, asterisk_line(), args=("--extensions", "(["))
    assert result.exit_code == 2 and "bad pattern" in result.stderr
