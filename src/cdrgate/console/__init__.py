"""The web console at ``/ui/``: server-rendered pages over the query and recording services
(docs/console.md)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from cdrgate.console import pages


def routes() -> list[BaseRoute]:
    return [
        Route("/ui", pages.to_home, methods=["GET"]),
        Route("/ui/", pages.guarded(pages.home), methods=["GET"]),
        Route("/ui/login", pages.guarded(pages.sign_in), methods=["POST"]),
        Route("/ui/logout", pages.guarded(pages.sign_out), methods=["POST"]),
        Route("/ui/cdrs", pages.guarded(pages.cdrs), methods=["GET"]),
        Route("/ui/cdrs.csv", pages.guarded(pages.cdrs_csv), methods=["GET"]),
        Route("/ui/recording", pages.guarded(pages.recording), methods=["GET"]),
        Mount("/ui/static", StaticFiles(packages=[("cdrgate.console", "static")]), name="static"),
    ]
