"""The console in process: sessions, CSRF, the lockout, bad input, the player's Range answers."""

from __future__ import annotations

import logging
import re

import pytest

from cdrgate import scope
from cdrgate.console.render import PAGE_HEADERS
from cdrgate.services.auth import set_api_user_scope
from cdrgate.services.query import QueryService
from cdrgate.services.recordings import RecordingService
from cdrgate.storage import tokens
from tests.conftest import API_PASSWORD, API_USER, make_cdr

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def _signin_csrf(http) -> str:
    page = http.get("/ui/")
    match = CSRF.search(page.text)
    assert match is not None
    return match[1]


def _sign_in(http, password: str = API_PASSWORD, **extra):
    form = {"username": API_USER, "password": password, "csrf": _signin_csrf(http), **extra}
    return http.post("/ui/login", data=form, follow_redirects=False)


def test_signed_out_visitor_is_sent_to_sign_in_with_the_page_to_return_to(client):
    answer = client.get("/ui/cdrs?number=1000", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/?next=%2Fui%2Fcdrs%3Fnumber%3D1000"
    form = client.get(answer.headers["location"]).text
    assert 'value="/ui/cdrs?number=1000"' in form
    assert '<label for="username">Username</label>' in form


def test_sign_in_sets_an_http_only_same_site_session_cookie_and_returns_to_next(client):
    answer = _sign_in(client, next="/ui/cdrs?number=1000")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/cdrs?number=1000"
    cookie = next(
        c for c in answer.headers.get_list("set-cookie") if c.startswith("cdrgate_session=")
    )
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/ui" in cookie
    # Before: Max-Age=1800, so the browser dropped the session 30 minutes after sign-in
    # however busy the agent, though each page slides the token's idle lifetime.
    assert "max-age" not in cookie.lower() and "expires" not in cookie.lower()


@pytest.mark.parametrize(
    ("trusted", "proto", "secure"),
    [
        # Behind deploy/nginx-cdrgate.conf, TLS ends in nginx, which says so in
        # X-Forwarded-Proto: the cookie lacked Secure though the browser spoke HTTPS.
        (("127.0.0.1",), "https", True),
        (("127.0.0.1",), "http", False),
        ((), "https", False),  # only a trusted proxy is believed
    ],
)
def test_the_consoles_cookies_are_secure_when_a_trusted_proxy_says_https(
    make_client, api_account, trusted, proto, secure
):
    # The sign-in form's cookie: the session cookie is set by the same code, and a client on
    # plain http (as this one is) would not send a Secure cookie back to sign in.
    http = make_client(trusted_proxies=trusted)
    answer = http.get("/ui/", headers={"X-Forwarded-Proto": proto})
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("cdrgate_"))
    assert ("; secure" in cookie.lower()) is secure, cookie


def test_next_pointing_off_the_console_lands_on_the_dashboard(client):
    answer = _sign_in(client, next="//evil.example/ui/")
    assert answer.headers["location"] == "/ui/"


def test_sign_in_without_the_forms_csrf_value_is_refused(client):
    _signin_csrf(client)  # the cookie is set, but the form's value is not sent back
    form = {"username": API_USER, "password": API_PASSWORD, "csrf": "forged"}
    answer = client.post("/ui/login", data=form, follow_redirects=False)
    assert answer.status_code == 403
    assert "cdrgate_session" not in answer.headers.get("set-cookie", "")


def test_wrong_password_says_so_and_the_lockout_then_refuses_even_the_right_one(
    make_client, api_account
):
    http = make_client(ip="127.0.0.9")
    for _ in range(5):
        answer = _sign_in(http, password="wrong")
        assert answer.status_code == 401
        assert "Wrong username or password." in answer.text
    locked = _sign_in(http)
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.text
    assert _sign_in(make_client(ip="127.0.0.10")).status_code == 303  # other IPs unaffected


def test_sign_out_needs_the_csrf_value_and_ends_the_session(client):
    _sign_in(client)
    assert client.post("/ui/logout", data={"csrf": "forged"}).status_code == 403
    assert client.get("/ui/cdrs", follow_redirects=False).status_code == 200  # still signed in
    csrf = CSRF.search(client.get("/ui/cdrs").text)
    assert csrf is not None
    answer = client.post("/ui/logout", data={"csrf": csrf[1]}, follow_redirects=False)
    assert answer.status_code == 303
    assert client.get("/ui/cdrs", follow_redirects=False).status_code == 303


def test_a_session_whose_token_expired_goes_back_to_sign_in(client, clock):
    _sign_in(client)
    clock.advance(1801)
    assert client.get("/ui/cdrs", follow_redirects=False).status_code == 303
    assert "Sign in" in client.get("/ui/").text


def test_a_filter_the_api_refuses_is_a_400_page_naming_it(client):
    _sign_in(client)
    answer = client.get("/ui/cdrs?status=LOST")
    assert answer.status_code == 400
    assert "status: &#39;LOST&#39; is not one of" in answer.text
    assert client.get("/ui/?day=yesterday").status_code == 400


@pytest.mark.parametrize("day", ["0001-01-01", "0001-01-13", "9999-12-31"])
def test_a_day_whose_dashboard_leaves_the_calendar_is_a_400_page(client, day):
    _sign_in(client)
    # Before: the span of days before it (or the day after it) overflowed: a 500.
    answer = client.get(f"/ui/?day={day}")
    assert answer.status_code == 400
    assert "day: not a day from 0001-01-14 to 9999-12-30" in answer.text


@pytest.mark.parametrize("day", ["0001-01-14", "9999-12-30"])
def test_the_first_and_last_days_the_dashboard_can_show(client, day):
    _sign_in(client)
    assert client.get(f"/ui/?day={day}").status_code == 200


def test_form_values_in_minutes_and_empty_fields_are_accepted(client, add_cdrs):
    add_cdrs(make_cdr(callid="1.1", timestart="2026-05-28 10:00:00"))
    _sign_in(client)
    answer = client.get("/ui/cdrs?from=2026-05-28T09:59&until=&number=&status=&q=")
    assert answer.status_code == 200
    assert "1.1" in answer.text


def test_a_pasted_api_links_limit_count_and_format_are_left_to_the_page(client, add_cdrs):
    add_cdrs(make_cdr(callid="1.1", timestart="2026-05-28 10:00:00"))
    _sign_in(client)
    # Before: "limit: given more than once", the page's own limit clashing with the link's.
    answer = client.get("/ui/cdrs?from=2026-05-28T00:00:00&limit=5&count=false&format=json")
    assert answer.status_code == 200, answer.text
    assert "1.1" in answer.text
    csv = client.get("/ui/cdrs.csv?from=2026-05-28T00:00:00&limit=5&format=json")
    assert csv.status_code == 200
    assert csv.headers["content-type"].startswith("text/csv") and "1.1," in csv.text


def test_pages_carry_a_self_only_content_security_policy(client):
    policy = client.get("/ui/").headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy


def test_recording_answers_range_requests_with_206(make_client, api_account, add_cdrs, tmp_path):
    folder = tmp_path / "rec"
    folder.mkdir()
    name = "20260528100000-1.1-1000-0215550100-Outbound.wav"
    (folder / name).write_bytes(bytes(range(256)) * 40)
    add_cdrs(make_cdr(callid="1.1", recording=name))
    http = make_client(recordings=str(folder))
    _sign_in(http)
    url = f"/ui/recording?name={name}"
    part = http.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.headers["content-range"] == "bytes 100-199/10240"
    assert part.content == (bytes(range(256)) * 40)[100:200]
    assert http.get(url).content == (folder / name).read_bytes()  # seeking needs no new random
    assert http.get(url, headers={"Range": "bytes=99999-"}).status_code == 416
    missing = http.get("/ui/recording?name=not-a-stored-name.wav")
    assert missing.status_code == 404


def test_no_console_answer_carries_cors_headers(client, add_cdrs):
    """The session is a cookie: the console stays same-origin, though it serves the query
    API's CSV (and that API may be read from any origin)."""
    add_cdrs(make_cdr())
    cross = {"Origin": "http://crm.example"}
    preflight = {**cross, "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "authorization"}  # fmt: skip
    answers = [client.get("/ui/", headers=cross), _sign_in(client)]
    for path in ("/ui/", "/ui/cdrs", "/ui/cdrs.csv", "/ui/static/console.js"):
        answers.append(client.get(path, headers=cross))
    answers.append(client.options("/ui/cdrs.csv", headers=preflight))
    assert [answer.status_code for answer in answers] == [200, 303, 200, 200, 200, 200, 405]
    for answer in answers:
        assert not [name for name in answer.headers if name.startswith("access-control-")]


@pytest.mark.parametrize("path", ["/ui/cdrs.csv", "/ui/recording?name=x.wav"])
def test_data_routes_refuse_signed_out_visitors(client, path):
    assert client.get(path, follow_redirects=False).status_code == 303


def test_every_asset_a_page_links_is_served_by_cdrgate(client):
    head = client.get("/ui/").text.split("<body>")[0]
    assets = re.findall(r'(?:href|src)="([^"]+)"', head)
    # The icon too: without one, the browser asked /favicon.ico, a 404 on every first visit.
    assert assets == ["/ui/static/favicon.svg", "/ui/static/console.css", "/ui/static/console.js"]
    for asset in assets:
        assert client.get(asset).status_code == 200


REACH = re.compile(r'<p class="reach">([^<]*)</p>')


def test_the_header_names_a_scoped_accounts_extensions_and_shortens_a_long_list(client, db, clock):
    _sign_in(client)
    assert REACH.search(client.get("/ui/cdrs").text) is None  # every extension: nothing said
    set_api_user_scope(db, API_USER, scope.parse("1000-1099,2001"), int(clock() * 1000))
    assert REACH.findall(client.get("/ui/").text) == ["Extensions 1000-1099, 2001 only"]
    many = ",".join(str(n) for n in range(3000, 3100, 2))
    set_api_user_scope(db, API_USER, scope.parse(many), int(clock() * 1000))
    [shown] = REACH.findall(client.get("/ui/cdrs").text)
    assert shown.startswith("Extensions 3000, 3002, ") and shown.endswith(", ... only")
    assert len(shown) < 100


def test_a_page_reads_its_token_once_for_its_queries_and_its_header(client, db, clock, monkeypatch):
    _sign_in(client)
    set_api_user_scope(db, API_USER, scope.parse("1000-1099"), int(clock() * 1000))
    reads = []
    last_seen = tokens.last_seen

    def counted(conn, token_hash):
        reads.append(token_hash)
        return last_seen(conn, token_hash)

    monkeypatch.setattr(tokens, "last_seen", counted)
    for path in ("/ui/", "/ui/cdrs"):  # the dashboard asks five queries; the list one
        reads.clear()
        assert REACH.findall(client.get(path).text) == ["Extensions 1000-1099 only"]
        assert len(reads) == 1, path


def test_a_token_that_expired_still_sends_every_page_to_sign_in(client, clock):
    _sign_in(client)
    clock.advance(10 * 24 * 3600)
    for path in ("/ui/", "/ui/cdrs"):
        assert '<label for="username">' in client.get(path).text, path


@pytest.mark.parametrize(
    ("path", "service", "method"),
    [
        ("/ui/", QueryService, "stats"),
        ("/ui/cdrs?number=1000", QueryService, "search"),
        ("/ui/cdrs.csv", QueryService, "search"),
        ("/ui/recording?name=x.wav", RecordingService, "play"),
    ],
)
def test_a_bug_is_a_readable_500_page_logged_once_with_its_traceback(
    client, monkeypatch, caplog, path, service, method
):
    _sign_in(client)

    def bug(*_args):
        raise RuntimeError("an injected bug")

    monkeypatch.setattr(service, method, bug)
    with caplog.at_level(logging.ERROR):
        # Before: the exception left the page (Starlette's bare "Internal Server Error").
        answer = client.get(path)
    assert answer.status_code == 500
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["content-security-policy"] == PAGE_HEADERS["Content-Security-Policy"]
    assert "Something went wrong on the server" in answer.text
    assert 'action="/ui/logout"' in answer.text  # still signed in: the header is whole
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(logged) == 1
    assert logged[0].name == "cdrgate.console"
    assert logged[0].getMessage() == f"unexpected error on GET {path.split('?')[0]}"
    assert logged[0].exc_info is not None and "an injected bug" in str(logged[0].exc_info[1])


def test_a_raw_plus_in_the_players_link_is_the_names_own_as_on_the_device_api(
    make_client, api_account, add_cdrs, tmp_path
):
    folder = tmp_path / "rec"
    folder.mkdir()
    plus = "20260528100000-1.1-+41791234567-1000-Inbound.wav"
    spaced = "20260528100001-1.2-a b-1000-Inbound.wav"
    for callid, name in (("1.1", plus), ("1.2", spaced)):
        (folder / name).write_bytes(name.encode() * 10)
        add_cdrs(make_cdr(callid=callid, recording=name, callfrom="+41791234567"))
    http = make_client(recordings=str(folder))
    _sign_in(http)
    # A name pasted from the CDR into the link, as /api/.../recording/download takes it.
    # Before: the "+" was read as a space, and the call's recording was "not on the server".
    pasted = http.get(f"/ui/recording?name={plus}")
    assert pasted.status_code == 200
    assert pasted.content == (folder / plus).read_bytes()
    # A form-encoded link's "+" for a space (a bookmark of an older page) still plays.
    assert http.get("/ui/recording?name=20260528100001-1.2-a+b-1000-Inbound.wav").status_code == 200
    # The page's own Play links say %2B and %20, so no reading can take one for the other.
    links = re.findall(r'data-src="([^"]+)"', http.get("/ui/cdrs").text)
    assert sorted(links) == [
        "/ui/recording?name=20260528100000-1.1-%2B41791234567-1000-Inbound.wav",
        "/ui/recording?name=20260528100001-1.2-a%20b-1000-Inbound.wav",
    ]
    for link in links:
        assert http.get(link).status_code == 200


def test_the_sign_in_page_offers_no_signed_in_header(client):
    """Before: a signed-out visitor's sign-in page showed Dashboard, Calls and Sign out."""
    for answer in (client.get("/ui/"), _sign_in(client, password="wrong")):
        assert "Sign in" in answer.text
        assert 'aria-label="Console"' not in answer.text
        assert "/ui/logout" not in answer.text
        assert len(CSRF.findall(answer.text)) == 1  # the sign-in form's own


def test_sign_in_works_from_either_of_two_tabs_sign_in_forms(client):
    """Two tabs on the sign-in page (a session that ran out under both): before, each load
    made a new value and voided the other tab's form ("The form expired")."""
    first, second = _signin_csrf(client), _signin_csrf(client)
    form = {"username": API_USER, "password": API_PASSWORD}
    answer = client.post("/ui/login", data={**form, "csrf": first}, follow_redirects=False)
    assert answer.status_code == 303
    # The other tab's form, sent after the first tab signed in, signs in as well.
    answer = client.post("/ui/login", data={**form, "csrf": second}, follow_redirects=False)
    assert answer.status_code == 303
    assert client.get("/ui/cdrs").status_code == 200


@pytest.mark.parametrize("path", ["/ui/login", "/ui/logout"])
def test_a_forms_address_asked_with_get_is_the_console_and_changes_nothing(client, path):
    """After a wrong password the address bar says /ui/login: before, reloading it, a
    bookmark or a restored tab answered a bare "Method Not Allowed"."""
    assert client.get(path, follow_redirects=False).status_code == 303
    _sign_in(client)
    answer = client.get(path, follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/ui/")
    assert "cdrgate_session" not in answer.headers.get("set-cookie", "")
    assert client.get("/ui/cdrs", follow_redirects=False).status_code == 200  # still signed in
    assert client.head(path, follow_redirects=False).status_code == 303
    refused = client.put(path)
    assert refused.status_code == 405
    assert set(refused.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}


def test_a_direction_the_api_refuses_is_refused_on_the_page(client):
    _sign_in(client)
    # Before: any word but "asc" sorted newest first, where /v1/cdrs answers 400.
    answer = client.get("/ui/cdrs?order=callduraction&direction=up")
    assert answer.status_code == 400
    assert "direction: &#39;up&#39; is not one of desc, asc" in answer.text
    assert client.get("/ui/cdrs.csv?direction=up").status_code == 400
    assert client.get("/ui/cdrs?direction=asc").status_code == 200


# (A missing file under /ui/static/ stays a plain 404: an asset, never a page a person sees.)
@pytest.mark.parametrize("path", ["/ui/nope", "/ui/cdrs/extra", "/ui/Cdrs"])
def test_an_unknown_console_address_is_a_console_404_page(client, path):
    # Before: Starlette's plain-text "Not Found", no way back, no console header.
    _sign_in(client)
    answer = client.get(path)
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["content-security-policy"] == PAGE_HEADERS["Content-Security-Policy"]
    assert "No such page" in answer.text and 'href="/ui/cdrs"' in answer.text
