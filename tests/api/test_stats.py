"""GET /v1/stats: calls, answered calls and seconds per group, with the query filters."""

from __future__ import annotations

import pytest

from tests.api.test_query import cdr_at


@pytest.fixture
def stats(client, flow):
    token = flow.token()

    def fetch(**params):
        response = client.get("/v1/stats", params={"token": token, **params})
        assert response.status_code == 200, response.text
        return {g.pop("key"): g for g in response.json()["groups"]}

    return fetch


@pytest.fixture
def calls(add_cdrs):
    return add_cdrs(
        # Thursday 2026-05-28
        cdr_at(1, "2026-05-28 10:15:00", callfrom="1000", callto="0215550100", type="Outbound",
               dsttrunkname="Sales", callduraction=60, talkduraction=50),
        cdr_at(2, "2026-05-28 10:45:00", callfrom="0215550199", callto="1001", type="Inbound",
               srctrunkname="Sales", dsttrunkname="", status="NO ANSWER", callduraction=20,
               talkduraction=0),
        cdr_at(3, "2026-05-29 11:00:00", callfrom="1000", callto="1001", type="Internal",
               srctrunkname="", dsttrunkname="", callduraction=30, talkduraction=25),
    )  # fmt: skip


def test_day_and_hour_are_time_buckets(stats, calls):
    assert stats(group="day") == {
        "2026-05-28": {"calls": 2, "answered": 1, "talk_seconds": 50, "duration_seconds": 80},
        "2026-05-29": {"calls": 1, "answered": 1, "talk_seconds": 25, "duration_seconds": 30},
    }
    assert list(stats(group="hour")) == ["2026-05-28 10:00:00", "2026-05-29 11:00:00"]


def test_weekday_is_named_and_ordered_from_monday(stats, calls):
    assert list(stats(group="weekday")) == ["Thursday", "Friday"]


def test_extension_counts_the_pbx_side_and_both_sides_of_internal_calls(stats, calls):
    groups = stats(group="extension")
    assert {key: g["calls"] for key, g in groups.items()} == {"1000": 2, "1001": 2}
    assert groups["1001"]["answered"] == 1


def test_trunk_counts_each_trunk_a_call_used(stats, calls):
    assert {k: g["calls"] for k, g in stats(group="trunk").items()} == {"Sales": 2}


def test_status_and_type_groups_take_the_same_filters(stats, calls):
    assert {k: g["calls"] for k, g in stats(group="status").items()} == {
        "ANSWERED": 2,
        "NO ANSWER": 1,
    }
    by_type = stats(group="type", **{"from": "2026-05-29 00:00:00"})
    assert {k: g["calls"] for k, g in by_type.items()} == {"Internal": 1}


def test_no_matching_calls_is_no_groups(stats, calls):
    assert stats(group="day", number="9999") == {}


@pytest.mark.parametrize("params", [{}, {"group": "month"}, {"group": "day", "limit": "5"}])
def test_a_missing_or_bad_group_is_a_400_problem(client, flow, params):
    response = client.get("/v1/stats", params={"token": flow.token(), **params})
    assert response.status_code == 400
    assert response.json()["parameter"] in ("group", "limit")
