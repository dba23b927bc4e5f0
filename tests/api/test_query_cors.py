"""CORS on the query API (``/v1/...``): a page on another origin may ask, send its Bearer
token, and read every answer, errors included; the console stays same-origin."""

from __future__ import annotations

import pytest

from cdrgate.errors import ApiError, Errno, StorageUnavailable
from cdrgate.services.query import QueryService
from tests.conftest import make_cdr

ORIGIN = "http://crm.example"
PATHS = ["/v1/cdrs", "/v1/cdrs/changes", "/v1/stats"]
EXPOSED = "Content-Disposition, Retry-After, WWW-Authenticate"
# What a script may read of any cross-origin answer without being told (the Fetch standard's
# CORS-safelisted response headers).
SAFELISTED = {"cache-control", "content-language", "content-length", "content-type",
              "expires", "last-modified", "pragma"}  # fmt: skip


@pytest.fixture
def token(flow) -> str:
    return flow.token()


def preflight(client, path: str, headers: str = "authorization,accept"):
    return client.options(
        path,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": headers,
        },
    )


def readable_cross_origin(response) -> None:
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-expose-headers"] == EXPOSED


@pytest.mark.parametrize("path", PATHS)
def test_a_preflight_allows_get_with_the_bearer_header(client, path):
    response = preflight(client, path)
    assert response.status_code == 200  # as the device API answers its preflights
    assert response.content == b""
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-allow-methods"] == "GET, HEAD"
    assert response.headers["access-control-allow-headers"] == "authorization,accept"
    assert int(response.headers["access-control-max-age"]) > 0
    assert "access-control-allow-credentials" not in response.headers


def test_a_preflight_needs_no_token_and_reads_nothing(client, monkeypatch):
    def refuse(*_args):
        raise AssertionError("a preflight must not reach the query service")

    for name in ("search", "changes", "stats"):
        monkeypatch.setattr(QueryService, name, refuse)
    assert preflight(client, "/v1/cdrs?number=1000").status_code == 200


def test_the_device_api_keeps_its_own_preflight(client):
    response = preflight(client, "/api/v1.1.0/login", headers="content-type")
    assert response.status_code == 200
    assert response.headers["access-control-allow-methods"] == "GET, POST, OPTIONS, PUT, DELETE"
    assert response.headers["access-control-allow-headers"] == "content-type"


def test_answers_with_items_are_readable_from_another_origin(client, token, add_cdrs):
    add_cdrs(make_cdr())
    auth = {"Authorization": f"Bearer {token}", "Origin": ORIGIN}
    for path, params in [
        ("/v1/cdrs", {"limit": "1"}),
        ("/v1/cdrs/changes", {}),
        ("/v1/stats", {"group": "day"}),
    ]:
        response = client.get(path, params=params, headers=auth)
        assert response.status_code == 200, response.text
        readable_cross_origin(response)
        assert response.headers["cache-control"] == "no-store"
    head = client.head("/v1/cdrs", headers=auth)
    assert head.status_code == 200
    readable_cross_origin(head)


@pytest.mark.parametrize(
    "ask", [{"headers": {"Accept": "text/csv"}}, {"params": {"format": "csv"}}]
)
def test_the_csv_answer_and_its_file_name_are_readable(client, token, add_cdrs, ask):
    add_cdrs(make_cdr())
    headers = {"Authorization": f"Bearer {token}", "Origin": ORIGIN, **ask.get("headers", {})}
    response = client.get("/v1/cdrs", params=ask.get("params"), headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    readable_cross_origin(response)
    assert "Content-Disposition" in response.headers["access-control-expose-headers"]


def test_401_and_400_problems_are_readable(client, token):
    unauthenticated = client.get("/v1/cdrs", headers={"Origin": ORIGIN})
    assert unauthenticated.status_code == 401
    readable_cross_origin(unauthenticated)
    bad = client.get("/v1/stats", params={"group": "moon", "token": token})
    assert bad.status_code == 400
    readable_cross_origin(bad)


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (ApiError(Errno.SERVER_BUSY), 503),
        (StorageUnavailable("down"), 503),
        (RuntimeError("a bug"), 500),
    ],
)
def test_503_and_500_problems_are_readable(client, token, monkeypatch, failure, status):
    def fail(*_args):
        raise failure

    monkeypatch.setattr(QueryService, "search", fail)
    response = client.get("/v1/cdrs", params={"token": token}, headers={"Origin": ORIGIN})
    assert response.status_code == status
    readable_cross_origin(response)


def test_every_header_a_script_needs_is_exposed(client, token, add_cdrs, monkeypatch):
    """No header the query API sends is hidden from a page (a new one must join the list)."""
    add_cdrs(make_cdr())
    answers = [
        client.get("/v1/cdrs", params={"token": token}),
        client.get("/v1/cdrs", params={"token": token, "format": "csv"}),
        client.get("/v1/cdrs/changes", params={"token": token}),
        client.get("/v1/stats", params={"token": token, "group": "day"}),
        client.get("/v1/cdrs", params={"token": token, "limit": "0"}),
        client.get("/v1/cdrs"),
    ]

    def busy(*_args):
        raise ApiError(Errno.SERVER_BUSY)

    monkeypatch.setattr(QueryService, "search", busy)
    answers.append(client.get("/v1/cdrs", params={"token": token, "format": "csv"}))
    assert {answer.status_code for answer in answers} == {200, 400, 401, 503}
    for answer in answers:
        exposed = answer.headers.get("access-control-expose-headers", "")
        readable = SAFELISTED | {name.strip().lower() for name in exposed.split(",")}
        hidden = {name for name in answer.headers if name not in readable}
        # nosniff is for the browser itself, which obeys it whatever the page may read.
        browser_only = {name for name in hidden if name == "x-content-type-options"}
        assert {n for n in hidden - browser_only if not n.startswith("access-control-")} == set()


# A line break inside the path (%0a, %0d) too: the catch-all's pattern matches it only when
# told to. (A path that only ends in %0a is its endpoint's: Starlette's `$` matches before a
# final line break, for every route.)
@pytest.mark.parametrize(
    "path", ["/v1/cdr", "/v1/", "/v1/cdrs/extra", "/v1/stats/day", "/v1/a%0d%0ab", "/v1/cdrs%0ax"]
)
def test_a_mistyped_path_is_a_404_problem_a_page_can_read(client, token, path):
    response = client.get(path, headers={"Origin": ORIGIN, "Authorization": f"Bearer {token}"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    readable_cross_origin(response)
    assert "/v1/cdrs" in response.json()["detail"]  # it names the endpoints there are


@pytest.mark.parametrize("path", ["/v1/cdr", "/v1/stats/day"])
def test_the_preflight_of_a_mistyped_path_passes_so_the_page_reads_its_404(client, path):
    # A browser sends the GET (and shows the page its 404 problem) only after a 2xx preflight.
    response = preflight(client, path)
    assert response.status_code == 200
    assert response.headers["access-control-allow-methods"] == "GET, HEAD"
    assert client.options(path).status_code == 404  # not a preflight: the problem document


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "TRACE", "PROPFIND"])
def test_another_method_is_a_405_problem_naming_what_is_allowed(client, method):
    response = client.request(method, "/v1/cdrs", headers={"Origin": ORIGIN})
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["allow"] == "GET, HEAD, OPTIONS"
    readable_cross_origin(response)


def test_under_a_prefix_another_method_is_still_the_405(client):
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.testclient import TestClient

    # Mounted (a proxy's prefix): the request's URL starts with the prefix, the routes' paths
    # do not. Before: the 405 was told from the URL, and POST /pbx/v1/cdrs was a 404.
    mounted = TestClient(Starlette(routes=[Mount("/pbx", app=client.app)]))
    response = mounted.post("/pbx/v1/cdrs", headers={"Origin": ORIGIN})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD, OPTIONS"
    assert mounted.get("/pbx/v1/cdr").status_code == 404


@pytest.mark.parametrize("path", ["/v1/cdrs/", "/v1/cdrs/changes/", "/v1/stats/"])
def test_an_endpoint_with_a_trailing_slash_redirects_to_it_keeping_the_query(client, path):
    # As Starlette's slash redirect answered before the catch-all route took every /v1/ path.
    response = client.get(f"{path}?limit=1&from=2026-05-01", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"].endswith(f"{path.rstrip('/')}?limit=1&from=2026-05-01")
    assert response.headers["access-control-allow-origin"] == "*"


def test_the_slash_redirect_does_not_send_the_client_to_the_host_it_named(client):
    response = client.get("/v1/stats/?group=day", headers={"Host": "evil.example"},
                          follow_redirects=False)  # fmt: skip
    assert response.status_code == 307
    assert response.headers["location"] == "/v1/stats?group=day"
