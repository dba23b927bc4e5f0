"""Jinja2 templates, autoescaped, loaded from the package so an installed cdrgate has them."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import HTMLResponse

from cdrgate import __version__

_ENV = Environment(
    loader=PackageLoader("cdrgate.console", "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)

# No script or style from anywhere but cdrgate, and no framing (clickjacking).
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; media-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _ENV.get_template(name).render(version=__version__, **context)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)
