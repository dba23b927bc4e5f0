"""The web console at ``/ui/``: server-rendered pages over the query and recording services
(docs/console.md)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from cdrgate.console import pages

# A form's address: POST does its work; GET (and so HEAD) sends to the console and changes
# nothing. The address bar shows /ui/login after a refused sign-in, and a reload, a bookmark
# or a restored tab asks it with GET: it answered a bare "Method Not Allowed".
FORM = ["GET", "POST"]


def routes() -> list[BaseRoute]:
    return [
        Route("/ui", pages.to_home, methods=["GET"]),
        Route("/ui/", pages.guarded(pages.home), methods=["GET"]),
        Route("/ui/login", pages.form_target(pages.guarded(pages.sign_in)), methods=FORM),
        Route("/ui/logout", pages.form_target(pages.guarded(pages.sign_out)), methods=FORM),
        Route("/ui/cdrs", pages.guarded(pages.cdrs), methods=["GET"]),
        Route("/ui/cdrs.csv", pages.guarded(pages.cdrs_csv), methods=["GET"]),
        Route("/ui/recording", pages.guarded(pages.recording), methods=["GET"]),
        Mount("/ui/static", StaticFiles(packages=[("cdrgate.console", "static")]), name="static"),
        # Last: any other address under /ui/ (a mistyped or stale bookmark) is a console page
        # with the way back, not Starlette's plain-text "Not Found".
        Route("/ui/{rest:path}", pages.unknown_page, methods=["GET"]),
    ]
