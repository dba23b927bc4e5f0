"""The console in Chromium against a real ``cdrgate serve``: what a person clicks, end to end."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from cdrgate import scope
from cdrgate.services.auth import set_api_user
from cdrgate.storage.db import Database
from tests.console.conftest import RECORDED_DAY, Console, sign_in
from tests.servers import PASSWORD

pytestmark = pytest.mark.e2e

COLUMNS = ("callid", "timestart", "callfrom", "callto", "callduraction", "talkduraction",
           "status", "type", "srctrunkname", "dsttrunkname")  # fmt: skip


def table(page: Any) -> list[dict[str, str]]:
    cells = page.eval_on_selector_all(
        "table.cdrs tbody tr",
        "rows => rows.map(r => Array.from(r.querySelectorAll('td')).map(c => c.innerText.trim()))",
    )
    return [dict(zip(COLUMNS, row, strict=False)) for row in cells if len(row) > 1]


def api_items(console: Console, **params: str) -> list[dict[str, Any]]:
    """Every item the JSON API answers for these filters, following its cursor."""
    headers = {"Authorization": f"Bearer {console.api_token()}"}
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": "1000", **({"cursor": cursor} if cursor else {})}
        answer = httpx.get(console.server.base_url + "/v1/cdrs", params=query, headers=headers)
        body = answer.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


def query_of(page: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def test_sign_in_returns_to_the_filtered_page_asked_for(page, console, screenshot):
    page.goto(console.url + "cdrs?number=1003")
    assert page.get_by_role("button", name="Sign in").is_visible()
    screenshot(page, "signin")
    sign_in(page, console, "cdrs?number=1003")
    assert query_of(page) == {"number": ["1003"]}
    rows = table(page)
    assert rows
    assert all("1003" in (row["callfrom"], row["callto"]) for row in rows)
    cookie = next(c for c in page.context.cookies() if c["name"] == "cdrgate_session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"


def test_filters_in_the_url_fill_the_form_and_the_table(page, console):
    sign_in(page, console)
    page.goto(console.url + "cdrs?status=BUSY&type=Inbound")
    rows = table(page)
    assert rows
    assert {(row["status"], row["type"]) for row in rows} == {("BUSY", "Inbound")}
    assert page.get_by_label("Status").input_value() == "BUSY"
    assert page.get_by_label("Type").input_value() == "Inbound"
    page.reload()
    assert table(page) == rows


def test_filtering_by_the_form_puts_the_filters_in_the_url(page, console, screenshot):
    sign_in(page, console)
    page.goto(console.url + "cdrs")
    page.get_by_label("From").fill("2026-05-03T00:00:00")
    page.get_by_label("To").fill("2026-05-10T00:00:00")
    page.get_by_label("Status").select_option("ANSWERED")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_load_state()
    query = query_of(page)
    assert query["status"] == ["ANSWERED"]
    assert query["from"] == ["2026-05-03T00:00"]  # Chromium drops zero seconds
    assert "number" not in query  # empty fields stay out of the link
    rows = table(page)
    assert rows
    assert all(row["status"] == "ANSWERED" for row in rows)
    assert all("2026-05-03" <= row["timestart"] < "2026-05-10" for row in rows)
    expected = api_items(console, status="ANSWERED", **{"from": "2026-05-03 00:00:00"},
                         until="2026-05-10 00:00:00")  # fmt: skip
    assert f"{len(expected)} calls match" in page.inner_text("p.summary")
    screenshot(page, "cdrs")


def test_next_pages_to_the_end_and_previous_comes_back(page, console):
    sign_in(page, console)
    page.goto(console.url + "cdrs?type=Internal&number=1001,1002,1003")
    first_page = table(page)
    seen = list(first_page)
    while page.get_by_role("link", name="Next", exact=True).count():
        page.get_by_role("link", name="Next", exact=True).click()
        page.wait_for_load_state()
        seen += table(page)
    expected = api_items(console, type="Internal", number="1001,1002,1003")
    assert len(expected) > 100  # more than two pages of 50
    assert [row["callid"] for row in seen] == [item["callid"] for item in expected]
    while page.get_by_role("link", name="Previous", exact=True).count():
        page.get_by_role("link", name="Previous", exact=True).click()
        page.wait_for_load_state()
    assert table(page) == first_page


def test_a_column_header_sorts_and_a_second_click_turns_it_round(page, console):
    sign_in(page, console)
    page.goto(console.url + "cdrs?number=1004")
    page.get_by_role("link", name="Talk (s)").click()
    page.wait_for_load_state()
    talk = [int(row["talkduraction"]) for row in table(page)]
    assert talk == sorted(talk, reverse=True)
    header = page.locator("th[aria-sort='descending']")
    assert "Talk" in header.inner_text()
    page.get_by_role("link", name="Talk (s)").click()
    page.wait_for_load_state()
    talk = [int(row["talkduraction"]) for row in table(page)]
    assert talk == sorted(talk)
    assert query_of(page)["direction"] == ["asc"]


def test_a_recording_plays_in_the_page_with_range_requests(page, console):
    sign_in(page, console)
    day = f"from={RECORDED_DAY}T00:00:00&until={RECORDED_DAY}T23:59:59"
    page.goto(console.url + f"cdrs?{day}&q=&has_recording=true")
    row = page.locator(
        "table.cdrs tbody tr", has=page.locator(f"a[data-src*='{console.recordings[0]}']")
    )
    with page.expect_response(lambda r: "/ui/recording?" in r.url) as answer:
        row.get_by_role("link", name="Play").click()
    assert answer.value.status == 206
    assert answer.value.headers["content-range"].startswith("bytes 0-")
    audio = row.locator("audio")
    audio.wait_for()
    page.wait_for_function("a => a.readyState >= 1 && a.duration > 1", arg=audio.element_handle())
    # Another row's Play pauses this one (looped, so it cannot have just ended by itself).
    # Before: both played at once.
    audio.evaluate("a => { a.loop = true; return a.play(); }")
    other = page.locator(
        "table.cdrs tbody tr", has=page.locator(f"a[data-src*='{console.recordings[1]}']")
    )
    other.get_by_role("link", name="Play").click()
    page.wait_for_function("a => !a.paused", arg=other.locator("audio").element_handle())
    assert audio.evaluate("a => a.paused")
    page.goto(console.url + f"cdrs?{day}&has_recording=false")
    assert "No recording" in page.inner_text("table.cdrs tbody tr:first-child")


def test_download_csv_is_the_apis_csv_of_the_whole_filtered_result(page, console, tmp_path):
    sign_in(page, console)
    page.goto(console.url + "cdrs?number=1005&direction=asc")
    with page.expect_download() as caught:
        page.get_by_role("link", name="Download CSV").click()
    saved = tmp_path / "console.csv"
    caught.value.save_as(saved)
    api = httpx.get(
        console.server.base_url + "/v1/cdrs",
        params={"number": "1005", "direction": "asc", "format": "csv"},
        headers={"Authorization": f"Bearer {console.api_token()}"},
    )
    assert saved.read_bytes() == api.content
    assert api.content.count(b"\n") - 1 == len(api_items(console, number="1005"))
    assert api.content.count(b"\n") > 51  # more than the page shows


def test_download_csv_after_the_session_ended_signs_in_and_comes_back(page, console):
    sign_in(page, console)
    page.goto(console.url + "cdrs?number=1005")
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "cdrgate_session")
    httpx.post(console.server.base_url + "/api/v1.1.0/logout", params={"token": token})
    # Before: the link's "download" attribute saved the sign-in page as download.html.
    with page.expect_navigation():
        page.get_by_role("link", name="Download CSV").click()
    page.get_by_label("Username").fill("api")
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    assert urlsplit(page.url).path == "/ui/cdrs" and query_of(page) == {"number": ["1005"]}
    with page.expect_download() as caught:
        page.get_by_role("link", name="Download CSV").click()
    assert caught.value.suggested_filename.endswith(".csv")


def test_dashboard_shows_the_days_totals_from_the_stats(page, console, screenshot):
    sign_in(page, console)
    page.goto(console.url + f"?day={RECORDED_DAY}")
    tile = page.locator(".tile").first
    calls = len(api_items(console, **{"from": f"{RECORDED_DAY} 00:00:00"},
                          until="2026-05-11 00:00:00"))  # fmt: skip
    assert tile.locator("dd").first.inner_text() == str(calls)
    assert page.get_by_role("img", name=f"Calls per hour on {RECORDED_DAY}").is_visible()
    assert "PBX local time" in page.inner_text("footer")
    screenshot(page, "dashboard")


def test_sign_out_with_a_forged_csrf_value_is_refused(page, console):
    sign_in(page, console)
    page.eval_on_selector("form.signout input[name=csrf]", "input => input.value = 'forged'")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_load_state()
    assert "The form expired" in page.inner_text("main")
    page.goto(console.url + "cdrs")
    assert page.get_by_role("button", name="Sign out").is_visible()  # still signed in


def test_sign_out_ends_the_session_and_its_token(page, console):
    sign_in(page, console)
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "cdrgate_session")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_load_state()
    assert page.get_by_role("button", name="Sign in").is_visible()
    page.goto(console.url + "cdrs")
    assert page.get_by_label("Password").is_visible()
    answer = httpx.get(console.server.base_url + "/v1/cdrs", params={"token": token})
    assert answer.status_code == 401


def test_the_pages_fit_a_phone_width(page, console):
    page.set_viewport_size({"width": 360, "height": 800})
    sign_in(page, console)
    # The calls table scrolls inside its own region; the dashboard's tables wrap their headers
    # (before, "Top extensions" pushed the dashboard 25 px past a 360 px phone's edge).
    for path in ("cdrs?number=1001", f"?day={RECORDED_DAY}"):
        page.goto(console.url + path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 360, path


def test_a_recording_the_server_does_not_have_says_so_in_the_row(page, console):
    sign_in(page, console)
    page.goto(console.url + "cdrs?has_recording=true&from=2026-05-20T00:00:00")
    row = page.locator("table.cdrs tbody tr").first  # no file was written for this day
    width = page.locator("table.cdrs").evaluate("t => t.offsetWidth")
    row.get_by_role("link", name="Play").click()
    assert row.get_by_role("status").inner_text() == "Recording not available on the server"
    # The note wraps under the links (before: on one line it widened the table, pushing the
    # recordings column further past the edge of the screen).
    assert page.locator("table.cdrs").evaluate("t => t.offsetWidth") == width


def test_play_after_the_session_ended_says_so_not_that_the_recording_is_missing(page, console):
    sign_in(page, console)
    page.goto(console.url + f"cdrs?from={RECORDED_DAY}T00:00:00&has_recording=true&direction=asc")
    # The page stays open while the session ends (idled out, or signed out elsewhere).
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "cdrgate_session")
    httpx.post(console.server.base_url + "/api/v1.1.0/logout", params={"token": token})
    row = page.locator(
        "table.cdrs tbody tr", has=page.locator(f"a[data-src*='{console.recordings[0]}']")
    )
    row.get_by_role("link", name="Play").click()
    # Before: "Recording not available on the server", for a file that is there.
    assert row.get_by_role("status").inner_text() == "Your session has ended. Sign in again"
    row.get_by_role("link", name="Sign in again").click()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Username").fill("api")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/ui/cdrs?*")
    assert "has_recording=true" in page.url


def test_a_scoped_account_sees_only_its_extensions_calls(page, console):
    own = {"1003", "1010", "1011", "1012"}
    db = Database(console.database_url)
    try:
        set_api_user(db, "desk", PASSWORD, 1_780_000_000_000, scope.parse("1003,1010-1012"))
    finally:
        db.dispose()
    sign_in(page, console, username="desk")
    page.goto(console.url + f"?day={RECORDED_DAY}")
    assert page.locator("header .reach").inner_text() == "Extensions 1003, 1010-1012 only"
    top = page.eval_on_selector_all(
        "section:has(h2:text('Top extensions')) tbody th", "cells => cells.map(c => c.innerText)"
    )
    assert top and set(top) <= own
    page.goto(console.url + "cdrs")
    assert page.locator("header .reach").inner_text() == "Extensions 1003, 1010-1012 only"
    rows = table(page)
    assert rows
    assert all(own & {row["callfrom"], row["callto"]} for row in rows)
    page.goto(console.url + "cdrs?number=1004")  # another's extension: only its calls with desk
    assert all(own & {row["callfrom"], row["callto"]} for row in table(page))
