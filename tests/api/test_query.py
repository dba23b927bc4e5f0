"""GET /v1/cdrs: authentication, every filter, sort, keyset paging, count, and CSV."""

from __future__ import annotations

import csv
import io

import pytest

from cdrgate.cdr import CSV_COLUMNS, CSV_HEADER
from cdrgate.services import query as query_service
from tests.conftest import make_cdr


def cdr(n: int, **overrides):
    """CDR number ``n``: distinct call id, one minute after the previous one by default."""
    minute = f"{n // 60:02d}:{n % 60:02d}"
    return make_cdr(callid=f"1780000000.{n}", timestart=f"2026-05-28 10:{minute}", **overrides)


def cdr_at(n: int, timestart: str, **overrides):
    return make_cdr(callid=f"1780000000.{n}", timestart=timestart, **overrides)


@pytest.fixture
def token(flow) -> str:
    return flow.token()


@pytest.fixture
def get(client, token):
    """GET with the token as a Bearer header; returns the response."""

    def fetch(path: str = "/v1/cdrs", **params):
        return client.get(path, params=params, headers={"Authorization": f"Bearer {token}"})

    return fetch


def callids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["callid"] for item in response.json()["items"]]


def ids_of(*numbers: int) -> list[str]:
    return [f"1780000000.{n}" for n in numbers]


# Authentication


def test_no_token_is_401_problem_with_errno_20005(client):
    response = client.get("/v1/cdrs")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert body["status"] == 401 and body["errno"] == "20005"


@pytest.mark.parametrize("authorization", [None, "Bearer ", "Bearer    "])
def test_no_token_says_how_to_send_one(client, authorization):
    # An empty header is what a pasted script whose login failed sends ($TOKEN empty): the
    # detail named only the query string, which that script never used.
    headers = {"Authorization": authorization} if authorization is not None else {}
    body = client.get("/v1/stats", headers=headers).json()
    assert body["errno"] == "20005"
    assert "Authorization: Bearer" in body["detail"] and "token=" in body["detail"]


def test_unknown_token_is_401_with_errno_20004(client, api_account):
    response = client.get("/v1/cdrs", headers={"Authorization": "Bearer " + "0" * 32})
    assert response.status_code == 401 and response.json()["errno"] == "20004"


def test_idle_token_is_401_with_errno_20006(client, token, clock):
    clock.advance(30 * 60)
    response = client.get("/v1/cdrs", params={"token": token})
    assert response.status_code == 401 and response.json()["errno"] == "20006"


def test_token_in_the_query_works_like_the_bearer_header(client, token, add_cdrs):
    add_cdrs(cdr(1))
    assert callids(client.get("/v1/cdrs", params={"token": token})) == ids_of(1)


def test_querying_slides_the_token_lifetime(get, clock):
    for _ in range(3):
        clock.advance(29 * 60)
        assert get().status_code == 200


def test_a_bad_token_is_refused_before_parameters_are_read(client, api_account):
    response = client.get("/v1/cdrs", params={"limit": "x", "token": "f" * 32})
    assert response.status_code == 401


# Items


def test_items_carry_the_14_csv_fields_by_yeastar_name_and_the_id(get, add_cdrs):
    add_cdrs(cdr(1, recording="rec.wav", didnumber="5550100", pincode="42"))
    body = get().json()
    assert body["next_cursor"] is None and "total" not in body
    [item] = body["items"]
    assert list(item) == ["id", *CSV_COLUMNS]
    assert isinstance(item["id"], int)
    assert item["timestart"] == "2026-05-28 10:00:01"
    assert item["callduraction"] == 42 and item["talkduraction"] == 34
    assert (item["recording"], item["didnumber"], item["pincode"]) == ("rec.wav", "5550100", "42")


def test_an_empty_result_is_an_empty_list(get):
    assert get().json() == {"items": [], "next_cursor": None}


# Sorting


def test_default_order_is_newest_first(get, add_cdrs):
    add_cdrs(cdr(2), cdr(1), cdr(3))
    assert callids(get()) == ids_of(3, 2, 1)
    assert callids(get(direction="asc")) == ids_of(1, 2, 3)


def test_durations_sort_with_the_id_breaking_ties(get, add_cdrs):
    add_cdrs(cdr(1, talkduraction=5), cdr(2, talkduraction=50), cdr(3, talkduraction=5))
    add_cdrs(cdr(4, callduraction=1, talkduraction=0))
    assert callids(get(order="talkduraction")) == ids_of(2, 3, 1, 4)
    assert callids(get(order="talkduraction", direction="asc")) == ids_of(4, 1, 3, 2)
    assert callids(get(order="callduraction", direction="asc"))[0] == ids_of(4)[0]


# Filters


def test_from_is_inclusive_and_until_exclusive_in_both_time_spellings(get, add_cdrs):
    add_cdrs(*(cdr_at(n, f"2026-05-28 10:00:0{n}") for n in range(1, 5)))
    assert callids(get(**{"from": "2026-05-28 10:00:02", "until": "2026-05-28 10:00:04"})) == (
        ids_of(3, 2)
    )
    assert callids(get(**{"from": "2026-05-28T10:00:02", "until": "2026-05-28T10:00:04"})) == (
        ids_of(3, 2)
    )


def test_number_matches_the_caller_or_the_callee_exactly(get, add_cdrs):
    add_cdrs(
        cdr(1, callfrom="1000", callto="0215550100"),
        cdr(2, callfrom="0215550199", callto="1001"),
        cdr(3, callfrom="1002", callto="10001"),
    )
    assert callids(get(number="1000")) == ids_of(1)
    assert callids(get(number="1001,1000")) == ids_of(2, 1)
    assert callids(get(number="0215550199")) == ids_of(2)


def test_a_call_between_asked_numbers_or_to_itself_comes_once(get, add_cdrs):
    add_cdrs(
        cdr(1, callfrom="1000", callto="1001"),
        cdr(2, callfrom="1001", callto="1001"),
        cdr(3, callfrom="1002", callto="1000"),
    )
    assert callids(get(number="1000,1001")) == ids_of(3, 2, 1)
    assert callids(get(number="1001")) == ids_of(2, 1)


@pytest.mark.parametrize("others", [0, 20], ids=["few numbers", "many numbers"])
def test_number_pages_follow_the_cursor_in_order(get, add_cdrs, others):
    add_cdrs(*(cdr(n, callfrom="1000" if n % 2 else "0215550100", callto="1000" if n % 3 == 0
                   else "1001") for n in range(1, 25)))  # fmt: skip
    numbers = ",".join(["1000", *(str(2000 + i) for i in range(others))])
    expected = callids(get(number=numbers, limit="100"))
    assert len(expected) == 16
    seen, cursor = [], None
    while True:
        body = get(number=numbers, limit="5", **({"cursor": cursor} if cursor else {})).json()
        seen += [item["callid"] for item in body["items"]]
        if (cursor := body["next_cursor"]) is None:
            break
    assert seen == expected


def test_status_and_type_take_comma_lists_in_any_case(get, add_cdrs):
    add_cdrs(
        cdr(1, status="ANSWERED", type="Outbound"),
        cdr(2, status="NO ANSWER", type="Inbound"),
        cdr(3, status="BUSY", type="Internal"),
    )
    assert callids(get(status="no answer,busy")) == ids_of(3, 2)
    assert callids(get(type="inbound")) == ids_of(2)
    assert callids(get(status="ANSWERED", type="Inbound")) == []


def test_trunk_matches_the_source_or_destination_trunk(get, add_cdrs):
    add_cdrs(
        cdr(1, srctrunkname="Sales", dsttrunkname=""),
        cdr(2, srctrunkname="", dsttrunkname="Sales"),
        cdr(3, srctrunkname="", dsttrunkname="Support"),
    )
    assert callids(get(trunk="Sales")) == ids_of(2, 1)


def test_did_sn_and_recording_filters(get, add_cdrs):
    add_cdrs(
        cdr(1, didnumber="5550100", recording="a.wav"),
        cdr(2, didnumber="5550200", sn="OTHER"),
        cdr(3),
    )
    assert callids(get(did="5550100")) == ids_of(1)
    assert callids(get(sn="OTHER")) == ids_of(2)
    assert callids(get(has_recording="true")) == ids_of(1)
    assert callids(get(has_recording="false")) == ids_of(3, 2)


def test_talk_time_bounds_are_inclusive(get, add_cdrs):
    add_cdrs(cdr(1, talkduraction=10), cdr(2, talkduraction=20), cdr(3, talkduraction=30))
    assert callids(get(min_talk="20")) == ids_of(3, 2)
    assert callids(get(max_talk="20")) == ids_of(2, 1)
    assert callids(get(min_talk="15", max_talk="25")) == ids_of(2)


def test_q_is_a_case_blind_substring_of_caller_callee_did_or_trunk(get, add_cdrs):
    add_cdrs(
        cdr(1, callfrom="+41445550100"),
        cdr(2, callto="0445550199", callfrom="1001"),
        cdr(3, didnumber="8445", callfrom="1001", callto="1002"),
        cdr(4, dsttrunkname="ZurichTrunk", callfrom="1001", callto="1002"),
        cdr(5, callfrom="1001", callto="1002", dsttrunkname=""),
    )
    assert callids(get(q="4455501")) == ids_of(2, 1)
    assert callids(get(q="445")) == ids_of(3, 2, 1)
    assert callids(get(q="zurich")) == ids_of(4)


def test_q_treats_like_wildcards_as_plain_characters(get, add_cdrs):
    add_cdrs(cdr(1, callfrom="10%0"), cdr(2, callfrom="1000"))
    assert callids(get(q="%")) == ids_of(1)
    assert callids(get(q="_")) == []


def test_filters_combine(get, add_cdrs):
    add_cdrs(
        cdr(1, callfrom="1000", status="ANSWERED", talkduraction=60),
        cdr(2, callfrom="1000", status="ANSWERED", talkduraction=5),
        cdr(3, callfrom="1000", status="BUSY", talkduraction=60),
        cdr(4, callfrom="1001", status="ANSWERED", talkduraction=60),
    )
    assert callids(get(number="1000", status="ANSWERED", min_talk="30")) == ids_of(1)


# Paging


def test_following_next_cursor_yields_every_row_once_in_order(get, add_cdrs):
    # Ten rows in the same second, so the id has to break the ties.
    add_cdrs(*(cdr_at(n, "2026-05-28 10:00:00") for n in range(10)), cdr(20), cdr(21))
    expected = callids(get(limit="100"))
    seen, cursor = [], None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        body = get(**params).json()
        seen += [item["callid"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == expected and len(seen) == 12


def test_a_full_last_page_has_no_next_cursor(get, add_cdrs):
    add_cdrs(cdr(1), cdr(2))
    assert get(limit="2").json()["next_cursor"] is None


def test_paging_stays_exact_while_rows_are_inserted(get, add_cdrs):
    add_cdrs(*(cdr(n) for n in range(1, 7)))
    first = get(limit="3", direction="asc").json()
    assert [i["callid"] for i in first["items"]] == ids_of(1, 2, 3)
    # One new row before the position (already paged), one inside the rest, one at the end.
    add_cdrs(cdr_at(50, "2026-05-28 09:00:00"), cdr_at(51, "2026-05-28 10:00:04"), cdr(9))
    rest = get(limit="100", direction="asc", cursor=first["next_cursor"]).json()
    # 51 ties with 4 on timestart: the later id comes second.
    assert [i["callid"] for i in rest["items"]] == ids_of(4, 51, 5, 6, 9)


def test_count_true_adds_the_total_of_all_pages(get, add_cdrs):
    add_cdrs(*(cdr(n, status="BUSY" if n % 2 else "ANSWERED") for n in range(1, 8)))
    body = get(limit="2", count="true", status="BUSY").json()
    assert body["total"] == 4 and len(body["items"]) == 2
    assert "total" not in get(count="false").json()


# Bad parameters


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "10001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "\u0661\u0660"}, "limit"),  # Arabic-Indic digits
        ({"from": "2026-02-30 00:00:00"}, "from"),
        ({"until": "yesterday"}, "until"),
        ({"from": "2026-05-02 00:00:00", "until": "2026-05-01 00:00:00"}, "until"),
        ({"status": "ANSWERED,LOST"}, "status"),
        ({"type": "Outgoing"}, "type"),
        ({"order": "callid"}, "order"),
        ({"direction": "up"}, "direction"),
        ({"has_recording": "yes"}, "has_recording"),
        ({"min_talk": "-1"}, "min_talk"),
        ({"max_talk": "99999999999999999999"}, "max_talk"),
        ({"count": "1"}, "count"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "WzEsMiwzXQ"}, "cursor"),
        ({"number": ","}, "number"),
        ({"trunk": " "}, "trunk"),
        ({"q": "x" * 201}, "q"),
        ({"did": "1\x002"}, "did"),
        ({"format": "xml"}, "format"),
        ({"numbr": "1000"}, "numbr"),
    ],
)
def test_a_bad_parameter_is_a_400_problem_naming_it(get, params, parameter):
    response = get(**params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["parameter"] == parameter and body["status"] == 400 and body["detail"]


def test_a_scalar_parameter_given_twice_is_refused_but_lists_add_up(client, token, add_cdrs):
    add_cdrs(cdr(1, callfrom="1000"), cdr(2, callfrom="1001"), cdr(3, callfrom="1002"))
    auth = {"Authorization": f"Bearer {token}"}
    twice = client.get("/v1/cdrs?limit=1&limit=2", headers=auth)
    assert twice.status_code == 400 and twice.json()["parameter"] == "limit"
    lists = client.get("/v1/cdrs?number=1000&number=1002", headers=auth)
    assert callids(lists) == ids_of(3, 1)


def test_a_cursor_only_continues_the_order_it_came_from(get, add_cdrs):
    add_cdrs(cdr(1), cdr(2))
    cursor = get(limit="1").json()["next_cursor"]
    response = get(limit="1", cursor=cursor, direction="asc")
    assert response.status_code == 400 and response.json()["parameter"] == "cursor"


# CSV


def test_accept_text_csv_streams_the_device_csv_of_the_whole_result(client, token, add_cdrs):
    records = add_cdrs(cdr(1, callfrom="1000"), cdr(2, callfrom="1001"), cdr(3, callfrom="1000"))
    response = client.get(
        "/v1/cdrs",
        params={"number": "1000", "limit": "1"},
        headers={"Authorization": f"Bearer {token}", "Accept": "text/csv"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith("attachment")
    assert response.text == CSV_HEADER + records[2].csv_line() + records[0].csv_line()


@pytest.mark.parametrize(
    ("accept", "answered"),
    [
        ("text/csv", "text/csv"),
        ("TEXT/CSV; charset=utf-8", "text/csv"),
        ("application/json, text/csv", "text/csv"),
        ("application/json;q=0.5, text/csv", "text/csv"),
        # Before: any mention of text/csv answered the whole CSV export.
        ("text/csv;q=0", "application/json"),
        ("application/json, text/csv;q=0.1", "application/json"),
        ("text/csvx", "application/json"),
        ("text/csv;q=zero", "application/json"),
        ("*/*", "application/json"),
        ("text/*", "application/json"),
    ],
)
def test_the_accept_headers_weights_decide_csv_or_json(client, token, add_cdrs, accept, answered):
    add_cdrs(cdr(1))
    response = client.get(
        "/v1/cdrs", headers={"Authorization": f"Bearer {token}", "Accept": accept}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(answered)


def test_format_csv_pages_through_large_results_in_order(get, add_cdrs, monkeypatch):
    monkeypatch.setattr(query_service, "CSV_PAGE_ROWS", 4)
    records = add_cdrs(*(cdr(n) for n in range(1, 12)))
    response = get(format="csv", direction="asc")
    rows = list(csv.reader(io.StringIO(response.text, newline="")))
    assert rows[0] == list(CSV_COLUMNS)
    assert [row[0] for row in rows[1:]] == [r.callid for r in records]


def test_an_empty_csv_is_just_the_header(get):
    assert get(format="csv").text == CSV_HEADER


def test_csv_errors_are_still_problems(client, api_account):
    response = client.get("/v1/cdrs", params={"format": "csv"})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


def test_csv_applies_the_csv_safe_setting(make_client, api_account, add_cdrs):
    add_cdrs(cdr(1, callfrom="=HYPERLINK(1)"))
    http = make_client(csv_safe=True)
    token = http.post(
        "/api/v1.1.0/login", json={"username": api_account[0], "password": api_account[1]}
    ).json()["token"]
    text = http.get("/v1/cdrs", params={"format": "csv", "token": token}).text
    assert text.splitlines()[1].split(",")[2] == "'=HYPERLINK(1)"


def test_the_default_page_is_100_items(get, add_cdrs):
    add_cdrs(*(cdr(n) for n in range(101)))
    body = get().json()
    assert len(body["items"]) == 100 and body["next_cursor"] is not None
