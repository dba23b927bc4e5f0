"""The protocol's route matcher answers as Starlette's generic one would for every path."""

from __future__ import annotations

import pytest
from starlette.routing import Route

from cdrgate.api.routes import API_PATH, STANDARD_METHODS, ApiRoute, dispatch

PATHS = [
    "/api/v2.0.0/cdr/download", "/api/v1.1.0/login", "/api/v1.1.0/cdr/download/", "/api/v/",
    "/api/v", "/api//login", "/api/", "/api", "/apix/v/login", "/", "/ui/cdrs", "/api/v/a//b",
]  # fmt: skip


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", ["GET", "POST", "TRACE"])
@pytest.mark.parametrize("outer", [{}, {"mounted": "yes"}])
def test_the_api_route_matches_as_the_generic_route(
    path: str, method: str, outer: dict[str, str]
) -> None:
    scope = {"type": "http", "path": path, "root_path": "", "method": method, "path_params": outer}
    generic = Route(API_PATH, dispatch, methods=list(STANDARD_METHODS))
    assert ApiRoute(list(STANDARD_METHODS)).matches(scope) == generic.matches(scope)


@pytest.mark.parametrize("path", ["/pbx/api/v1.1.0/login", "/pbx", "/pbx/ui", "/api/v1.1.0/login"])
def test_under_a_root_path_the_api_route_matches_as_the_generic_route(path: str) -> None:
    scope = {"type": "http", "path": path, "root_path": "/pbx", "method": "POST", "path_params": {}}
    generic = Route(API_PATH, dispatch, methods=list(STANDARD_METHODS))
    assert ApiRoute(list(STANDARD_METHODS)).matches(scope) == generic.matches(scope)


def test_the_api_route_ignores_websockets() -> None:
    scope = {"type": "websocket", "path": "/api/v1.1.0/login", "root_path": ""}
    assert ApiRoute(list(STANDARD_METHODS)).matches(scope) == Route(API_PATH, dispatch).matches(
        scope
    )
