"""cdr/download: the CSV, the filter, and every way a random can be refused."""

from __future__ import annotations

import csv
import io
from concurrent.futures import ThreadPoolExecutor

import pytest

from cdrgate.cdr import CSV_HEADER
from cdrgate.services.export import MAX_PAGE_ROWS
from tests.conftest import Flow, make_cdr

START, END = "2026-05-01 00:00:00", "2026-05-31 23:59:59"


def rows(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.text, newline="")))


def callids(response) -> list[str]:
    return [row[0] for row in rows(response)[1:]]


def test_csv_has_the_yeastar_header_and_columns(flow, add_cdrs):
    add_cdrs(make_cdr())
    response = flow.download(flow.token())
    assert response.status_code == 200
    assert response.text.startswith(CSV_HEADER)
    assert response.text.split("\n")[0] == (
        "callid,timestart,callfrom,callto,callduraction,talkduraction,srctrunkname,"
        "dsttrunkname,status,type,pincode,recording,didnumber,sn"
    )
    assert not response.content.startswith(b"\xef\xbb\xbf")


def test_csv_headers_tell_the_client_it_is_an_attachment(flow, add_cdrs):
    add_cdrs(make_cdr())
    response = flow.download(flow.token())
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    assert response.headers["content-disposition"].endswith('.csv"')
    assert response.headers["access-control-allow-origin"] == "*"


def test_a_download_sends_its_headers_in_the_same_order_each_time(flow, add_cdrs):
    # Encoded once per file name (api/cdr.py): the second answer is built from the cache.
    add_cdrs(make_cdr())
    for _ in range(2):
        response = flow.download(flow.token())
        assert response.headers.multi_items()[:6] == [
            ("access-control-allow-origin", "*"),
            ("access-control-allow-methods", "GET, POST, OPTIONS, PUT, DELETE"),
            ("content-type", "text/csv; charset=utf-8"),
            (
                "content-disposition",
                'attachment; filename="cdr-2026-05-01_000000-2026-05-31_235959.csv"',
            ),
            ("access-control-expose-headers", "Content-Disposition"),
            ("cache-control", "no-store"),
        ]


def test_post_download_ignores_the_body(flow, add_cdrs):
    add_cdrs(make_cdr())
    response = flow.download(flow.token(), method="POST")
    assert callids(response) == ["1780000000.1"]


def test_rows_are_ordered_by_timestart_then_callid(flow, add_cdrs):
    add_cdrs(
        make_cdr(callid="1780000300.9", timestart="2026-05-28 10:05:00"),
        make_cdr(callid="1780000000.3", timestart="2026-05-28 10:00:00"),
        make_cdr(callid="1780000000.2", timestart="2026-05-28 10:00:00"),
        make_cdr(callid="1779990000.1", timestart="2026-05-27 09:00:00"),
    )
    response = flow.download(flow.token())
    assert callids(response) == ["1779990000.1", "1780000000.2", "1780000000.3", "1780000300.9"]


def test_time_bounds_are_inclusive(flow, add_cdrs):
    add_cdrs(
        make_cdr(callid="a", timestart="2026-05-10 07:59:59"),
        make_cdr(callid="b", timestart="2026-05-10 08:00:00"),
        make_cdr(callid="c", timestart="2026-05-10 17:00:00"),
        make_cdr(callid="d", timestart="2026-05-10 17:00:01"),
    )
    response = flow.download(flow.token(), "all", "2026-05-10 08:00:00", "2026-05-10 17:00:00")
    assert callids(response) == ["b", "c"]


def test_extension_matches_caller_or_callee(flow, add_cdrs):
    add_cdrs(
        make_cdr(callid="out", callfrom="1000", callto="0215550100"),
        make_cdr(
            callid="in", callfrom="0215550100", callto="1000", timestart="2026-05-28 11:00:00"
        ),
        make_cdr(callid="int", callfrom="1001", callto="1000", timestart="2026-05-28 12:00:00"),
        make_cdr(callid="other", callfrom="1002", callto="1003", timestart="2026-05-28 13:00:00"),
    )
    token = flow.token()
    assert callids(flow.download(token, "1000")) == ["out", "in", "int"]
    assert callids(flow.download(token, "1001,1003")) == ["int", "other"]
    assert callids(flow.download(token, "all")) == ["out", "in", "int", "other"]


def test_a_call_between_two_listed_extensions_appears_once(flow, add_cdrs):
    add_cdrs(make_cdr(callid="int", callfrom="1001", callto="1000"))
    assert callids(flow.download(flow.token(), "1000,1001")) == ["int"]


def test_no_matching_cdr_is_20021(flow, add_cdrs):
    add_cdrs(make_cdr())
    answer = flow.download(flow.token(), "4711").json()
    assert answer == {"status": "Failed", "errno": "20021"}


def test_reversed_range_is_no_data(flow, add_cdrs):
    add_cdrs(make_cdr())
    assert flow.download(flow.token(), "all", END, START).json()["errno"] == "20021"


def test_no_match_can_be_a_header_only_file(make_client, api_account):
    flow = Flow(make_client(empty_download="header"))
    response = flow.download(flow.token(), "4711")
    assert response.text == CSV_HEADER


def test_a_random_works_once(flow, add_cdrs, client):
    add_cdrs(make_cdr())
    token = flow.token()
    random = flow.get_random(token)["random"]
    url = flow.download_url(token, random, "all", START, END)
    assert client.get(url).status_code == 200 and client.get(url).json()["errno"] == "20020"


def test_a_random_expires_after_30_seconds(flow, add_cdrs, client, clock):
    add_cdrs(make_cdr())
    token = flow.token()
    fresh, stale = flow.get_random(token)["random"], None
    clock.advance(29.9)
    assert callids(client.get(flow.download_url(token, fresh, "all", START, END)))
    stale = flow.get_random(token)["random"]
    clock.advance(30)
    answer = client.get(flow.download_url(token, stale, "all", START, END)).json()
    assert answer["errno"] == "20020"


@pytest.mark.parametrize(
    "change",
    [
        {"ext": "1000"},
        {"start": "2026-05-01 00:00:01"},
        {"end": "2026-05-31 23:59:58"},
    ],
)
def test_a_random_is_bound_to_its_parameters(flow, add_cdrs, client, change):
    add_cdrs(make_cdr())
    token = flow.token()
    random = flow.get_random(token)["random"]
    link = {"ext": "all", "start": START, "end": END, **change}
    answer = client.get(flow.download_url(token, random, **link)).json()
    assert answer["errno"] == "20020"
    # A refused attempt does not spend the random.
    assert callids(client.get(flow.download_url(token, random, "all", START, END)))


@pytest.mark.parametrize("where", [0, 10, 11, 31])
def test_a_random_with_one_digit_changed_is_20020_and_the_real_one_still_works(
    flow, add_cdrs, client, where
):
    # The first 11 digits name the random's expiry, the rest are secret: a change to either
    # (a later expiry too) names no random that was issued.
    add_cdrs(make_cdr())
    token = flow.token()
    random = flow.get_random(token)["random"]
    digit = "0" if random[where] != "0" else "1"
    forged = random[:where] + digit + random[where + 1 :]
    answer = client.get(flow.download_url(token, forged, "all", START, END)).json()
    assert answer["errno"] == "20020"
    assert callids(client.get(flow.download_url(token, random, "all", START, END)))


def test_a_random_is_bound_to_its_token(flow, add_cdrs, client):
    add_cdrs(make_cdr())
    first, second = flow.token(), flow.token()
    random = flow.get_random(first)["random"]
    assert client.get(flow.download_url(second, random, "all", START, END)).json() == {
        "status": "Failed",
        "errno": "20020",
    }


def test_unknown_random_is_20020_and_missing_one_is_10004(flow, client):
    token = flow.token()
    assert client.get(flow.download_url(token, "f" * 32, "all", START, END)).json()["errno"] == (
        "20020"
    )
    url = f"/api/v1.1.0/cdr/download?extid=all&starttime={START}&endtime={END}&token={token}"
    assert client.get(url).json()["errno"] == "10004"


def test_download_token_errors(flow, client, clock):
    token = flow.token()
    random = flow.get_random(token)["random"]
    base = f"/api/v1.1.0/cdr/download?extid=all&starttime={START}&endtime={END}"
    assert client.get(f"{base}&random={random}").json()["errno"] == "20005"
    assert client.get(f"{base}&token={'1' * 32}&random={random}").json()["errno"] == "20004"
    clock.advance(1800)
    assert client.get(f"{base}&token={token}&random={random}").json()["errno"] == "20006"


def test_bad_time_in_the_link_is_20019(flow, client):
    token = flow.token()
    random = flow.get_random(token)["random"]
    url = flow.download_url(token, random, "all", "2026-02-30 00:00:00", END)
    assert client.get(url).json()["errno"] == "20019"


def test_only_the_ip_that_asked_may_download(make_client, api_account, add_cdrs):
    add_cdrs(make_cdr())
    app_server, stranger = Flow(make_client("127.0.0.2")), Flow(make_client("127.0.0.3"))
    token = app_server.token()
    random = app_server.get_random(token)["random"]
    url = app_server.download_url(token, random, "all", START, END)
    assert stranger.http.get(url).json() == {"status": "Failed", "errno": "20015"}
    assert callids(app_server.http.get(url)) == ["1780000000.1"]


def test_allowedip_lets_one_more_address_download(make_client, api_account, add_cdrs):
    add_cdrs(make_cdr())
    app_server = Flow(make_client("127.0.0.2"))
    browser, other = make_client("127.0.0.4"), make_client("127.0.0.5")
    token = app_server.token()
    random = app_server.get_random(token, allowedip="127.0.0.4")["random"]
    url = app_server.download_url(token, random, "all", START, END)
    assert other.get(url).json()["errno"] == "20015"
    assert callids(browser.get(url)) == ["1780000000.1"]
    assert app_server.http.get(url).json()["errno"] == "20020"  # already used


def test_allowedip_in_ipv6(make_client, api_account, add_cdrs):
    add_cdrs(make_cdr())
    app_server, v6_host = Flow(make_client("127.0.0.2")), make_client("::1")
    token = app_server.token()
    random = app_server.get_random(token, allowedip="0:0:0:0:0:0:0:1")["random"]
    assert callids(v6_host.get(app_server.download_url(token, random, "all", START, END)))


@pytest.mark.parametrize(
    "query",
    [
        "extid=1000%2C1001&starttime=2026-05-01%2000%3A00%3A00&endtime=2026-05-31%2023%3A59%3A59",
        "extid=1000,1001&starttime=2026-05-01+00:00:00&endtime=2026-05-31+23:59:59",
        "extid=1000,1001&starttime=2026-05-01%2000:00:00&endtime=2026-05-31%2023:59:59",
    ],
    ids=["encodeURIComponent", "plus-for-space", "manual-%20"],
)
def test_query_values_are_decoded_leniently(flow, add_cdrs, client, query):
    add_cdrs(make_cdr(callfrom="1001"))
    token = flow.token()
    random = flow.get_random(token, "1000,1001")["random"]
    response = client.get(f"/api/v1.1.0/cdr/download?{query}&token={token}&random={random}")
    assert callids(response) == ["1780000000.1"]


def test_parameter_order_does_not_matter(flow, add_cdrs, client):
    add_cdrs(make_cdr())
    token = flow.token()
    random = flow.get_random(token)["random"]
    url = (
        f"/api/v1.1.0/cdr/download?random={random}&token={token}"
        f"&endtime={END}&starttime={START}&extid=all"
    )
    assert callids(client.get(url)) == ["1780000000.1"]


def test_v2_link_uses_number(client, add_cdrs):
    add_cdrs(make_cdr(callfrom="4000"))
    v2 = Flow(client, "v2.0.0")
    response = v2.download(v2.token(), "4000")
    assert callids(response) == ["1780000000.1"]


def test_fifty_concurrent_downloads_of_one_random_give_one_csv(flow, add_cdrs, client):
    add_cdrs(*[make_cdr(callid=f"c{i}", callfrom=str(1000 + i % 7)) for i in range(200)])
    token = flow.token()
    random = flow.get_random(token)["random"]
    url = flow.download_url(token, random, "all", START, END)
    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(lambda _: client.get(url), range(50)))
    csvs = [r for r in responses if r.headers["content-type"].startswith("text/csv")]
    refused = [r.json() for r in responses if r not in csvs]
    assert len(csvs) == 1 and len(callids(csvs[0])) == 200
    assert refused == [{"status": "Failed", "errno": "20020"}] * 49


def test_fields_that_need_quoting_are_quoted_and_others_are_not(flow, add_cdrs):
    tricky = make_cdr(
        callfrom='"Boss, Big" <1000>',
        srctrunkname="line1\nline2",
        recording="Zürich\u2013Genève ☎.wav",
    )
    add_cdrs(tricky)
    text = flow.download(flow.token()).text
    line = text[len(CSV_HEADER) :]
    assert line.startswith(
        '1780000000.1,2026-05-28 10:00:00,"""Boss, Big"" <1000>",0215550100,42,34,'
    )
    assert '"line1\nline2"' in line and ",Zürich\u2013Genève ☎.wav," in line
    assert rows(flow.download(flow.token()))[1] == tricky.csv_fields()


def test_large_export_streams_in_several_chunks(flow, add_cdrs, client):
    # All in one second: the densest case, read by key a page at a time.
    count = MAX_PAGE_ROWS + 7
    add_cdrs(*[make_cdr(callid=f"{i:06d}") for i in range(count)])
    token = flow.token()
    random = flow.get_random(token)["random"]
    with client.stream("GET", flow.download_url(token, random, "all", START, END)) as response:
        chunks = list(response.iter_raw())
    assert len(chunks) >= 3
    body = b"".join(chunks).decode()
    assert [line.split(",")[0] for line in body.splitlines()[1:]] == [
        f"{i:06d}" for i in range(count)
    ]
