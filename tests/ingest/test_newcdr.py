"""NewCdr events (spec section 8) map onto the 14 CSV fields, whatever the doc variant."""

from __future__ import annotations

import pytest

from cdrgate.ingest.newcdr import BadTime, is_newcdr, record_from_event

V1_EVENT = {  # spec 8.1: empty fields omitted, desttrunkname spelling
    "action": "NewCdr", "callid": "1547392142.330", "timestart": "2019-01-13 23:09:02",
    "callfrom": "1005", "callto": "9283737733", "desttrunkname": "SPS-6-36",
    "callduraction": "6", "talkduraction": "3", "status": "ANSWERED", "type": "Outbound",
    "recording": "20180315201242-1521173562.46-203-201-Internal.wav", "sn": "369362089179",
}  # fmt: skip
V2_EVENT = {  # spec 8.2: every key sent, dsttrcunkname typo
    "event": "NewCdr", "callid": "1571897930.5", "timestart": "2019-10-23 22:18:50",
    "callfrom": "1023", "callto": "2023", "callduraction": "19", "talkduraction": "14",
    "srctrunkname": "", "dsttrcunkname": "", "pincode": "", "status": "ANSWERED",
    "type": "Internal", "recording": "20191024201242-1571897930.5-203-201-Internal.wav",
    "didnumber": "", "agentringtime": "0", "sn": "369451090405",
}  # fmt: skip


def test_v1_event_maps_to_the_csv_row():
    assert record_from_event(V1_EVENT).csv_line() == (
        "1547392142.330,2019-01-13 23:09:02,1005,9283737733,6,3,,SPS-6-36,ANSWERED,Outbound,,"
        "20180315201242-1521173562.46-203-201-Internal.wav,,369362089179\n"
    )


def test_v2_event_maps_to_the_csv_row():
    assert record_from_event(V2_EVENT).csv_line() == (
        "1571897930.5,2019-10-23 22:18:50,1023,2023,19,14,,,ANSWERED,Internal,,"
        "20191024201242-1571897930.5-203-201-Internal.wav,,369451090405\n"
    )


@pytest.mark.parametrize("key", ["dsttrunkname", "desttrunkname", "dsttrcunkname", "dstrunkname"])
def test_every_destination_trunk_spelling_is_read(key):
    event = {"event": "NewCdr", "callid": "1.1", "timestart": "2026-05-28 10:00:00", key: "T1"}
    assert record_from_event(event).dsttrunkname == "T1"


def test_cdrid_stands_in_for_callid():
    event = {"action": "NewCdr", "cdrid": "77.1", "timestart": "2026-05-28 10:00:00"}
    assert record_from_event(event).callid == "77.1"


def test_missing_keys_are_empty_and_durations_zero():
    record = record_from_event(
        {"action": "NewCdr", "callid": "1.1", "timestart": "2026-05-28 10:00:00"}
    )
    assert record.csv_line() == "1.1,2026-05-28 10:00:00,,,0,0,,,,,,,,\n"


def test_the_source_serial_fills_a_missing_sn_but_never_overrides_one():
    bare = {"event": "NewCdr", "callid": "1.1", "timestart": "2026-05-28 10:00:00"}
    assert record_from_event(bare, default_sn="box-7").sn == "box-7"
    assert record_from_event({**bare, "sn": "369"}, default_sn="box-7").sn == "369"


def test_integer_values_are_accepted_where_v2_tables_say_integer():
    event = {**V2_EVENT, "callto": 2023, "callduraction": 19, "didnumber": 5550100}
    record = record_from_event(event)
    assert (record.callto, record.callduraction, record.didnumber) == ("2023", 19, "5550100")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"callid": ""}, "callid is empty"),
        ({"timestart": ""}, "timestart is empty"),
        ({"callduraction": "12:10:10 AM"}, "callduraction is not a whole number"),
        ({"callfrom": ["1000"]}, "callfrom must be a string or a whole number, not an array"),
        ({"callduraction": 1.5}, "callduraction must be a string or a whole number, not the nu"),
    ],
)
def test_a_bad_event_names_the_field(change, message):
    with pytest.raises(ValueError, match=message):
        record_from_event({**V2_EVENT, **change})


def test_an_impossible_time_is_a_time_error():
    with pytest.raises(BadTime, match="timestart"):
        record_from_event({**V2_EVENT, "timestart": "2019-02-30 10:00:00"})


def test_only_newcdr_events_are_cdrs():
    assert is_newcdr(V1_EVENT) and is_newcdr(V2_EVENT)
    assert not is_newcdr({"event": "ExtensionStatus", "extension": "1000"})
    assert not is_newcdr({"callid": "1.1"})
