"""A page on another origin, in Chromium, reads the query API of a real ``cdrgate serve`` with
its Bearer token (a preflight first), errors included; it cannot read the console."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.console.conftest import Console, sign_in

pytestmark = pytest.mark.e2e

PAGE = b"<!doctype html><title>A CRM on another origin</title>"


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def other_origin() -> Iterator[str]:
    """A blank page served from another port of 127.0.0.1: another origin than cdrgate's."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def crm(page: Any, other_origin: str, console: Console) -> Any:
    page.goto(other_origin + "/")
    assert page.evaluate("location.origin") != console.server.base_url
    return page


# fetch(), as the page's own script calls it; {failed: "TypeError"} when the browser refuses
# to hand the answer over (all a script learns of a CORS failure).
FETCH = """async ([url, token, read, credentials]) => {
  const headers = token ? {Authorization: 'Bearer ' + token} : {};
  let answer;
  try {
    answer = await fetch(url, {headers, credentials});
  } catch (error) {
    return {failed: error.name};
  }
  const names = ['Content-Type', 'Content-Disposition', 'WWW-Authenticate', 'Cache-Control'];
  return {
    status: answer.status,
    headers: Object.fromEntries(names.map(name => [name, answer.headers.get(name)])),
    body: read === 'json' ? await answer.json() : await answer.text(),
  };
}"""


def fetch(
    page: Any,
    url: str,
    token: str | None = None,
    read: str = "json",
    credentials: str = "same-origin",
) -> dict[str, Any]:
    answer: dict[str, Any] = page.evaluate(FETCH, [url, token, read, credentials])
    return answer


def test_a_page_on_another_origin_reads_cdrs_with_its_bearer_token(crm, console):
    answer = fetch(crm, console.server.base_url + "/v1/cdrs?limit=1", console.api_token())
    assert answer["status"] == 200, answer
    assert len(answer["body"]["items"]) == 1
    assert answer["body"]["next_cursor"]
    assert answer["headers"]["Cache-Control"] == "no-store"


def test_it_reads_the_csv_and_its_file_name(crm, console):
    url = console.server.base_url + "/v1/cdrs?format=csv&from=2026-05-10T00:00:00"
    answer = fetch(crm, url, console.api_token(), read="text")
    assert answer["status"] == 200, answer
    assert answer["body"].startswith("callid,timestart,callfrom,")
    assert answer["headers"]["Content-Disposition"].startswith("attachment; filename=")


def test_it_reads_a_401_problem_and_why(crm, console):
    for token in (None, "0" * 32):  # none: a simple request; a bad one: preflight first
        answer = fetch(crm, console.server.base_url + "/v1/stats?group=day", token)
        assert answer["status"] == 401, answer
        assert answer["headers"]["Content-Type"] == "application/problem+json"
        assert answer["headers"]["WWW-Authenticate"].startswith("Bearer")
        assert answer["body"]["errno"] == ("20005" if token is None else "20004")


def test_it_reads_the_404_problem_of_a_mistyped_path_with_its_bearer_token(crm, console):
    # The Bearer header makes the browser send a preflight first; a 404 there was all it saw.
    answer = fetch(crm, console.server.base_url + "/v1/cdr?limit=1", console.api_token())
    assert answer["status"] == 404, answer
    assert answer["headers"]["Content-Type"] == "application/problem+json"
    assert "/v1/cdrs" in answer["body"]["detail"]


def test_it_reads_a_400_problem_naming_the_parameter(crm, console):
    answer = fetch(crm, console.server.base_url + "/v1/cdrs?limit=0", console.api_token())
    assert answer["status"] == 400, answer
    assert answer["body"]["parameter"] == "limit"


def test_it_cannot_read_the_console_even_with_the_visitors_session(page, other_origin, console):
    """Another port of the same host is the same site, so the SameSite=Strict session cookie
    goes with a fetch that asks for it: only the missing CORS headers keep the page out."""
    sign_in(page, console)
    assert page.get_by_role("link", name="Calls").is_visible()
    page.goto(other_origin + "/")
    base = console.server.base_url
    for path in ("/ui/", "/ui/cdrs", "/ui/cdrs.csv", "/ui/static/console.js"):
        for credentials in ("include", "omit"):
            answer = fetch(page, base + path, read="text", credentials=credentials)
            assert answer == {"failed": "TypeError"}, (path, credentials)
    # While the API answers it; never a fetch that sends cookies, though ("*" grants none).
    token = console.api_token()
    assert fetch(page, base + "/v1/cdrs?limit=1", token)["status"] == 200
    refused = fetch(page, base + "/v1/cdrs?limit=1", token, credentials="include")
    assert refused == {"failed": "TypeError"}
    session = next(c for c in page.context.cookies() if c["name"] == "cdrgate_session")
    for path in ("/ui/", "/ui/cdrs.csv"):
        headers = {"Origin": other_origin, "Cookie": f"cdrgate_session={session['value']}"}
        raw = httpx.get(base + path, headers=headers)
        assert raw.status_code == 200, path
        assert "access-control-allow-origin" not in raw.headers, path
