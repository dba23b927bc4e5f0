"""POST cdr/get_random: validation, echo and the random itself."""

from __future__ import annotations

import re

import pytest

START, END = "2026-05-01 00:00:00", "2026-05-31 23:59:59"


def test_echoes_the_inputs_and_adds_a_random(flow):
    token = flow.token()
    answer = flow.get_random(token, "1000,1001", START, END)
    assert answer.keys() == {"status", "extid", "starttime", "endtime", "random"}
    assert (answer["status"], answer["extid"], answer["starttime"], answer["endtime"]) == (
        "Success", "1000,1001", START, END,
    )  # fmt: skip
    assert re.fullmatch(r"[0-9a-f]{32}", answer["random"])


def test_every_random_is_different(flow):
    token = flow.token()
    randoms = {flow.get_random(token)["random"] for _ in range(20)}
    assert len(randoms) == 20


@pytest.mark.parametrize("missing", ["extid", "starttime", "endtime"])
def test_missing_field_is_10004(client, flow, missing):
    token = flow.token()
    body = {"extid": "all", "starttime": START, "endtime": END}
    del body[missing]
    answer = client.post(f"/api/v1.1.0/cdr/get_random?token={token}", json=body).json()
    assert answer == {"status": "Failed", "errno": "10004"}


def test_blank_extid_is_10004(flow):
    assert flow.get_random(flow.token(), " , ")["errno"] == "10004"


def test_an_extid_list_past_1000_extensions_is_10004_and_1000_is_accepted(flow):
    token = flow.token()
    extensions = [str(1000 + n) for n in range(1001)]
    assert flow.get_random(token, ",".join(extensions))["errno"] == "10004"
    assert flow.get_random(token, ",".join(extensions[:1000]))["status"] == "Success"


@pytest.mark.parametrize(
    "bad",
    [
        "2026-02-30 00:00:00",  # no such day
        "2026-13-01 00:00:00",
        "2026-05-01 24:00:00",
        "2026-05-01 23:60:00",
        "2026/05/01 00:00:00",
        "2026-05-01T00:00:00",
        "2026-05-01",
        "yesterday",
        "2026-5-1 0:0:0",
    ],
)
def test_bad_time_is_20019(flow, bad):
    token = flow.token()
    assert flow.get_random(token, start=bad)["errno"] == "20019"
    assert flow.get_random(token, end=bad)["errno"] == "20019"


def test_leap_day_is_a_real_time(flow):
    assert flow.get_random(flow.token(), start="2028-02-29 12:00:00")["status"] == "Success"


@pytest.mark.parametrize(
    "bad",
    [
        "192.168.5.20,192.168.5.21",
        "pbx.example",
        "999.1.1.1",
        "10.0.0.0/8",
        "garbage",
        "[2001:db8::7",
        "2001:db8::7]",
        "[[2001:db8::7]]",
        "[192.168.5.20]",
        "[]",
    ],
)
def test_bad_allowedip_is_20015(flow, bad):
    assert flow.get_random(flow.token(), allowedip=bad)["errno"] == "20015"


# A client that sends its address in an array or object (or true) meant to name one: not
# taken for "no allowedip" (a random only the caller may use), but refused like any bad one.
@pytest.mark.parametrize(
    "bad", [["192.168.5.20"], ["192.168.5.20", "10.0.0.1"], {"ip": "192.168.5.20"}, [], {}, True]
)
def test_an_allowedip_that_is_not_a_string_or_number_is_20015(flow, bad):
    assert flow.get_random(flow.token(), allowedip=bad)["errno"] == "20015"


def test_a_null_allowedip_is_absent(flow):
    assert flow.get_random(flow.token(), allowedip=None)["status"] == "Success"


@pytest.mark.parametrize("good", ["192.168.5.20", "2001:db8::7", "[2001:db8::7]", "", " "])
def test_one_address_or_blank_allowedip_is_accepted(flow, good):
    assert flow.get_random(flow.token(), allowedip=good)["status"] == "Success"


def test_v2_names_the_selector_number(client):
    from tests.conftest import Flow

    v2 = Flow(client, "v2.0.0")
    answer = v2.get_random(v2.token(), "4000", "2019-10-24 00:00:00", "2019-10-24 15:59:59")
    assert answer["status"] == "Success"
    assert answer["number"] == "4000" and "extid" not in answer
