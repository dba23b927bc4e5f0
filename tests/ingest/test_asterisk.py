"""cdrgate import --format asterisk: cdr_csv Master.csv rows mapped onto the Yeastar fields."""

from __future__ import annotations

import csv

import pytest
from typer.testing import CliRunner

from cdrgate.cli import app
from cdrgate.ingest.asterisk import channel_peer, record_from_fields
from cdrgate.ingest.formats import Format, row_mapper
from cdrgate.ingest.lines import parse_line
from cdrgate.ingest.profile import AccountcodeAs, SourceProfile
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
    parsed = parse_line(
        asterisk_line(disposition=disposition).encode(), row_mapper(Format.asterisk, PROFILE)
    )
    assert parsed is not None and parsed[0].status == status


def test_without_uniqueid_a_stable_callid_makes_reimport_a_no_op(db, tmp_path):
    line = asterisk_line(uniqueid=None)
    first, lines = imported(db, tmp_path, line)
    again, lines_again = imported(db, tmp_path, line)
    assert "1 new" in first.stdout and "0 new, 1 already present" in again.stdout
    assert lines == lines_again and lines[0].startswith("csv-")


def fields_of(line: str) -> list[str]:
    return next(csv.reader([line]))


def test_the_channel_decides_direction_not_the_number():
    # A 4-digit external number would look like an extension; the channel says trunk.
    record, _ = record_from_fields(fields_of(asterisk_line(src="5550")), PROFILE)
    assert (record.type, record.srctrunkname) == ("Inbound", "provider")


def test_a_short_number_dialled_out_through_a_trunk_is_outbound():
    line = asterisk_line(
        src="1000", dst="911", channel="PJSIP/1000-0000001c", dstchannel="PJSIP/telco-0000001d"
    )
    record, _ = record_from_fields(fields_of(line), PROFILE)
    assert (record.type, record.dsttrunkname) == ("Outbound", "telco")


def test_a_feature_code_without_a_dialled_channel_is_internal():
    line = asterisk_line(
        src="1000", dst="*97", channel="PJSIP/1000-0000001c", dstchannel="", lastapp="VoiceMailMain"
    )
    record, _ = record_from_fields(fields_of(line), PROFILE)
    assert (record.type, record.srctrunkname, record.dsttrunkname) == ("Internal", "", "")


def test_trunks_option_names_trunks_whose_peer_looks_like_an_extension():
    line = asterisk_line(src="0215550100", channel="SIP/5551-0000001a")
    plain, _ = record_from_fields(fields_of(line), PROFILE)
    named, _ = record_from_fields(fields_of(line), SourceProfile.build("pbx-a", trunks="gw1, 5551"))
    assert plain.type == "Internal"
    assert (named.type, named.srctrunkname) == ("Inbound", "5551")


def test_a_call_to_a_did_keeps_the_did_and_the_extension_reached():
    line = asterisk_line(dst="0215550150", dstchannel="PJSIP/1000-0000001b")
    record, _ = record_from_fields(fields_of(line), PROFILE)
    assert (record.type, record.callto, record.didnumber) == ("Inbound", "1000", "0215550150")


def test_accountcode_goes_to_pincode_only_when_asked():
    line = asterisk_line(
        accountcode="4711", src="1000", dst="0215550199", channel="PJSIP/1000-0000001c",
        dstchannel="PJSIP/provider-0000001d",
    )  # fmt: skip
    asked = SourceProfile.build("pbx-a", accountcode_as=AccountcodeAs.pincode)
    assert record_from_fields(fields_of(line), PROFILE)[0].pincode == ""
    assert record_from_fields(fields_of(line), asked)[0].pincode == "4711"


def test_import_prints_a_count_per_type_and_status(db, tmp_path):
    result, _ = imported(
        db, tmp_path,
        asterisk_line(),
        asterisk_line(uniqueid="2.2"),
        asterisk_line(uniqueid="3.3", src="1000", dst="1001", channel="PJSIP/1000-0000001e",
                      dstchannel="PJSIP/1001-0000001f", disposition="BUSY"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "by type and status: Inbound ANSWERED 2, Internal BUSY 1" in result.stdout


def test_accountcode_as_and_trunks_options_reach_the_mapping(db, tmp_path):
    line = asterisk_line(accountcode="77", channel="SIP/5551-0000001a")
    result, lines = imported(
        db, tmp_path, line, args=("--trunks", "5551", "--accountcode-as", "pincode")
    )
    assert result.exit_code == 0, result.output
    assert lines == [
        "1779962400.26,2026-05-28 10:00:00,0215550100,1000,60,55,5551,,ANSWERED,Inbound,77,,,pbx-a"
    ]


def test_a_yeastar_import_of_a_master_csv_suggests_the_format(db, tmp_path):
    path = tmp_path / "Master.csv"
    path.write_text(asterisk_line() + "\n")
    result = runner.invoke(app, ["import", str(path), "--database", db.url])
    assert result.exit_code == 1
    assert "found 18" in result.stderr and "try --format asterisk" in result.stderr


def test_a_duration_too_large_to_store_is_a_skipped_line(db, tmp_path):
    result, lines = imported(
        db, tmp_path, asterisk_line(duration=2**63), asterisk_line(uniqueid="2.2")
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert ":1: duration is out of range" in result.stderr
    assert [line.split(",")[0] for line in lines] == ["2.2"]


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
