"""Accounts scoped to extensions: every read path shows a scoped account its calls only.

The account reads ``1000-1099,2001``. The stored calls are in scope by their caller, by their
callee, or not at all; a recording is named by one of each. ``READS`` below lists every route
of the app with the test that shows it honours the scope (or why it reads no CDR), and
``test_every_route_is_a_known_read_or_not_a_read`` fails on a route missing from it, so a new
read route cannot forget the scope unnoticed.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import Mount, Route

from cdrgate import scope
from cdrgate.api.routes import ENDPOINTS
from cdrgate.services.auth import set_api_user, set_api_user_scope
from cdrgate.versions import SELECTOR_FIELD
from tests.conftest import API_PASSWORD, API_USER, Flow, make_cdr
from tests.recordings.conftest import WAV, RecordingFlow

SCOPE = "1000-1099,2001"
VERSIONS = sorted(SELECTOR_FIELD)
DAY = "2026-05-28"

# callid -> (callfrom, callto, type, recording); "in" ids are the scoped account's calls.
CALLS = {
    "in.caller": ("1000", "0215550100", "Outbound", "own.wav"),
    "in.callee": ("0219990000", "2001", "Inbound", ""),
    "in.internal": ("3000", "1050", "Internal", ""),
    "out.other": ("3000", "0215550100", "Outbound", "foreign.wav"),
    "out.short": ("100", "3001", "Internal", ""),  # 3 digits: not in 1000-1099
    "out.long": ("10500", "3000", "Internal", ""),  # 5 digits: not in 1000-1099
}
MINE = {callid for callid in CALLS if callid.startswith("in.")}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "recordings"
    root.mkdir()
    for name in ("own.wav", "foreign.wav"):
        (root / name).write_bytes(WAV)
    return root


@pytest.fixture
def scoped(db, clock, add_cdrs, make_client, folder):
    """A client of an app whose only account reads ``SCOPE``, with ``CALLS`` stored."""
    set_api_user(db, API_USER, API_PASSWORD, int(clock() * 1000), scope.parse(SCOPE))
    add_cdrs(*(
        make_cdr(callid=callid, timestart=f"{DAY} 10:00:{n:02d}", callfrom=src, callto=dst,
                 type=kind, recording=recording)
        for n, (callid, (src, dst, kind, recording)) in enumerate(sorted(CALLS.items()))
    ))  # fmt: skip
    return make_client(recordings=str(folder))


def bearer(http) -> dict[str, str]:
    return {"Authorization": f"Bearer {Flow(http).token()}"}


def csv_callids(text: str) -> set[str]:
    return {row["callid"] for row in csv.DictReader(io.StringIO(text))}


# The Yeastar download, every version


@pytest.mark.parametrize("version", VERSIONS)
def test_download_of_all_is_the_accounts_calls_only(scoped, version):
    flow = Flow(scoped, version)
    answer = flow.download(flow.token(), "all", f"{DAY} 00:00:00", f"{DAY} 23:59:59")
    assert answer.status_code == 200, answer.text
    assert csv_callids(answer.text) == MINE


@pytest.mark.parametrize("version", VERSIONS)
def test_download_of_a_foreign_extension_finds_no_cdr(scoped, version):
    flow = Flow(scoped, version)
    answer = flow.download(flow.token(), "3000", f"{DAY} 00:00:00", f"{DAY} 23:59:59")
    assert answer.json() == {"status": "Failed", "errno": "20021"}


@pytest.mark.parametrize("version", VERSIONS)
def test_download_of_own_and_foreign_extensions_returns_the_own_ones(scoped, version):
    flow = Flow(scoped, version)
    answer = flow.download(flow.token(), "3000,1050", f"{DAY} 00:00:00", f"{DAY} 23:59:59")
    assert csv_callids(answer.text) == {"in.internal"}  # 3000's other calls are not its


def test_unscoped_account_still_reads_every_call(db, clock, scoped):
    set_api_user_scope(db, API_USER, None, int(clock() * 1000))
    flow = Flow(scoped)
    answer = flow.download(flow.token(), "all", f"{DAY} 00:00:00", f"{DAY} 23:59:59")
    assert csv_callids(answer.text) == set(CALLS)


def test_a_scope_changed_mid_session_applies_to_the_next_request(db, clock, scoped):
    flow = Flow(scoped)
    token = flow.token()
    set_api_user_scope(db, API_USER, scope.parse("3000"), int(clock() * 1000))
    answer = flow.download(token, "all", f"{DAY} 00:00:00", f"{DAY} 23:59:59")
    assert csv_callids(answer.text) == {"in.internal", "out.other", "out.long"}


def test_a_deleted_accounts_token_stops_working(db, scoped):
    from cdrgate.services import accounts

    flow = Flow(scoped)
    token = flow.token()
    accounts.delete(db, API_USER)
    assert flow.get_random(token)["errno"] == "20004"


# The JSON query API


def test_cdrs_list_count_and_csv_hold_only_the_accounts_calls(scoped):
    headers = bearer(scoped)
    page = scoped.get("/v1/cdrs", params={"count": "true"}, headers=headers).json()
    assert {item["callid"] for item in page["items"]} == MINE
    assert page["total"] == len(MINE)
    exported = scoped.get("/v1/cdrs", params={"format": "csv"}, headers=headers)
    assert csv_callids(exported.text) == MINE


def test_cdrs_paged_one_row_at_a_time_stay_in_scope(scoped):
    headers = bearer(scoped)
    seen, cursor = [], None
    while True:
        params = {"limit": "1", **({"cursor": cursor} if cursor else {})}
        page = scoped.get("/v1/cdrs", params=params, headers=headers).json()
        seen += [item["callid"] for item in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert sorted(seen) == sorted(MINE)


@pytest.mark.parametrize(
    ("numbers", "expected"),
    [
        ("3000", {"in.internal"}),  # a foreign number: only its calls with the account
        ("0215550100", {"in.caller"}),  # an outside number, the same
        ("3001", set()),
        ("1000,3000,3001,100,10500", {"in.caller", "in.internal"}),  # the merged-scan path
        ("1000,1001,1002,1003,1004,1005,1006,1007,3000", {"in.caller", "in.internal"}),
    ],
)
def test_number_filter_answers_within_the_scope(scoped, numbers, expected):
    answer = scoped.get("/v1/cdrs", params={"number": numbers}, headers=bearer(scoped))
    assert answer.status_code == 200
    assert {item["callid"] for item in answer.json()["items"]} == expected


def test_changes_feed_carries_only_the_accounts_calls(scoped):
    answer = scoped.get("/v1/cdrs/changes", params={"limit": "100"}, headers=bearer(scoped))
    body = answer.json()
    assert {item["callid"] for item in body["items"]} == MINE
    # The short page looked at every row: the next read starts past the foreign ones too.
    assert body["next_after"] == body["last_seq"] >= max(item["seq"] for item in body["items"])
    again = {"after": str(body["next_after"])}
    assert (
        scoped.get("/v1/cdrs/changes", params=again, headers=bearer(scoped)).json()["items"] == []
    )


def test_a_full_page_of_changes_continues_after_its_last_row(scoped):
    headers = bearer(scoped)
    seen, after = [], 0
    while True:
        params = {"after": str(after), "limit": "1"}
        body = scoped.get("/v1/cdrs/changes", params=params, headers=headers).json()
        if not body["items"]:
            break
        assert body["next_after"] == body["items"][-1]["seq"]
        seen += [item["callid"] for item in body["items"]]
        after = body["next_after"]
    assert sorted(seen) == sorted(MINE)


def test_stats_count_the_accounts_calls_and_group_its_own_extensions(scoped):
    headers = bearer(scoped)
    by_status = scoped.get("/v1/stats", params={"group": "status"}, headers=headers).json()
    assert sum(group["calls"] for group in by_status["groups"]) == len(MINE)
    by_ext = scoped.get("/v1/stats", params={"group": "extension"}, headers=headers).json()
    assert {group["key"] for group in by_ext["groups"]} == {"1000", "2001", "1050"}


# Recordings, every version


@pytest.mark.parametrize("version", VERSIONS)
def test_recording_of_an_own_call_downloads_and_anothers_is_20014(scoped, version):
    rec = RecordingFlow(scoped, version)
    assert rec.download("own.wav").content == WAV
    assert rec.get_random(rec.token(), "foreign.wav") == {"status": "Failed", "errno": "20014"}


def test_recording_download_rechecks_the_scope_when_the_random_is_redeemed(db, clock, scoped):
    rec = RecordingFlow(scoped)
    token = rec.token()
    random = rec.random(token, "own.wav")
    set_api_user_scope(db, API_USER, scope.parse("3000"), int(clock() * 1000))
    assert rec.fetch(token, "own.wav", random).json() == {"status": "Failed", "errno": "20014"}


# The console

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def signed_in(http) -> Any:
    form_csrf = CSRF.search(http.get("/ui/").text)
    assert form_csrf is not None
    form = {"username": API_USER, "password": API_PASSWORD, "csrf": form_csrf[1]}
    assert http.post("/ui/login", data=form, follow_redirects=False).status_code == 303
    return http


def test_console_list_and_csv_show_only_the_accounts_calls(scoped):
    http = signed_in(scoped)
    page = http.get("/ui/cdrs").text
    assert all(callid in page for callid in MINE)
    assert not any(callid in page for callid in set(CALLS) - MINE)
    assert csv_callids(http.get("/ui/cdrs.csv").text) == MINE


def test_console_dashboard_counts_the_accounts_calls(scoped):
    http = signed_in(scoped)
    page = http.get("/ui/", params={"day": DAY}).text
    assert "3000" not in page and "10500" not in page  # no foreign extension in the top list
    assert "1050" in page


def test_console_plays_an_own_recording_and_404s_anothers(scoped):
    http = signed_in(scoped)
    assert http.get("/ui/recording", params={"name": "own.wav"}).content == WAV
    assert http.get("/ui/recording", params={"name": "foreign.wav"}).status_code == 404


# Every route of the app is a known read (with the test that shows its scope) or not a read.

Check = Callable[..., None] | str
API_READS: dict[str, Check] = {
    "cdr/download": test_download_of_all_is_the_accounts_calls_only,
    # get_random reads no CDR (it echoes its request); the download it opens is checked.
    "cdr/get_random": "issues a random; the download it opens is the read",
    "recording/get_random": test_recording_of_an_own_call_downloads_and_anothers_is_20014,
    "recording/download": test_recording_of_an_own_call_downloads_and_anothers_is_20014,
    "login": "opens a session, reads no CDR",
    "heartbeat": "keeps a session, reads no CDR",
    "logout": "ends a session, reads no CDR",
    "cdr/push": "writes CDRs (an ingest key, not an account)",
}
READS: dict[str, Check] = {
    "/": "a page of links, no CDR",
    "/openapi.json": "the API description, no CDR",
    "/metrics": "process and store figures, no CDR (not per account)",
    "/v1/cdrs": test_cdrs_list_count_and_csv_hold_only_the_accounts_calls,
    "/v1/cdrs/changes": test_changes_feed_carries_only_the_accounts_calls,
    "/v1/stats": test_stats_count_the_accounts_calls_and_group_its_own_extensions,
    "/v1/{rest:anytext}": "a 404 or 405 problem for any other path or method, no CDR",
    "/ui": "redirects to /ui/",
    "/ui/": test_console_dashboard_counts_the_accounts_calls,
    "/ui/login": "signs in, reads no CDR",
    "/ui/logout": "signs out, reads no CDR",
    "/ui/cdrs": test_console_list_and_csv_show_only_the_accounts_calls,
    "/ui/cdrs.csv": test_console_list_and_csv_show_only_the_accounts_calls,
    "/ui/recording": test_console_plays_an_own_recording_and_404s_anothers,
    "/ui/static": "the console's own CSS and script",
    "/ui/{rest:path}": "a 404 page for any other console address, no CDR",
}


def on_every_version(check: Check) -> bool:
    """A read of the device API is checked on every version, not on one."""
    marks = getattr(check, "pytestmark", [])
    return any(m.name == "parametrize" and m.args == ("version", VERSIONS) for m in marks)


def app_paths(app: Any) -> set[str]:
    """Every path the app answers, the device API's expanded per version and endpoint."""
    paths = set()
    for route in app.routes:
        assert isinstance(route, Route | Mount), f"unexpected route type {route!r}"
        if route.path == "/api/{version}/{endpoint:path}":
            paths |= {f"/api/{v}/{name}" for v in SELECTOR_FIELD for name in ENDPOINTS}
        else:
            paths.add(route.path)
    return paths


def test_every_route_is_a_known_read_or_not_a_read(make_client, api_account, folder):
    app = make_client(recordings=str(folder)).app
    unknown = []
    for path in sorted(app_paths(app)):
        if path.startswith("/api/"):
            check = API_READS.get(path.split("/", 3)[3])
            if callable(check):
                assert on_every_version(check), f"{check.__name__} must run on every version"
        else:
            check = READS.get(path)
        if check is None:
            unknown.append(path)
    assert not unknown, (
        f"routes without a scope check: {unknown}; add a test that a scoped account reads "
        "only its calls there, and list it in READS/API_READS (or say why it reads no CDR)"
    )


def test_the_route_registry_names_no_route_that_is_gone(make_client, api_account, folder):
    paths = app_paths(make_client(recordings=str(folder)).app)
    names = {path.split("/", 3)[3] for path in paths if path.startswith("/api/")}
    assert set(API_READS) == names
    assert set(READS) == {path for path in paths if not path.startswith("/api/")}
