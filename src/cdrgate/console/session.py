"""The console's session cookie and CSRF tokens.

The session *is* an API login token (services/auth.py), so the console obeys the same rules
as the API: the per-IP lockout on sign-in, the 30-minute idle lifetime, logout. The cookie is
HttpOnly (no script reads it) and SameSite=Strict (no other site's page sends it).

CSRF: every state-changing form carries a token the server checks. Signed in, it is an HMAC
of the session token, so nothing extra is stored; on the sign-in form (no session yet) it is
a random value that must match a short-lived cookie of its own (double submit), which stops
another site from signing a browser in to an account of its choosing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from starlette.requests import Request
from starlette.responses import Response

from cdrgate.api.envelope import client_scheme

SESSION_COOKIE = "cdrgate_session"
SIGNIN_COOKIE = "cdrgate_signin"
CSRF_FIELD = "csrf"
COOKIE_PATH = "/ui"
_SIGNIN_VALUE = re.compile(r"[0-9a-f]{32}")


def session_token(request: Request) -> str | None:
    token = request.cookies.get(SESSION_COOKIE, "").strip()
    return token or None


def csrf_for(token: str) -> str:
    return hmac.new(token.encode(), b"cdrgate console csrf", hashlib.sha256).hexdigest()


def csrf_matches(token: str, sent: str | None) -> bool:
    return sent is not None and hmac.compare_digest(csrf_for(token), sent)


def signin_csrf(request: Request) -> str:
    """The sign-in form's value: the browser's own where it has one, so every tab's sign-in
    form holds the same value (a new one per form made each newer tab's form void the older
    ones': an agent signing in on one of two tabs was told the form had expired)."""
    cookie = request.cookies.get(SIGNIN_COOKIE, "")
    return cookie if _SIGNIN_VALUE.fullmatch(cookie) else secrets.token_hex(16)


def signin_csrf_matches(request: Request, sent: str | None) -> bool:
    cookie = request.cookies.get(SIGNIN_COOKIE)
    return bool(cookie) and sent is not None and hmac.compare_digest(cookie or "", sent)


def _set(request: Request, response: Response, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        # Behind a TLS-ending proxy the request reached us in plain HTTP: the browser's scheme
        # is the proxy's X-Forwarded-Proto.
        secure=client_scheme(request) == "https",
    )


def set_session(request: Request, response: Response, token: str) -> None:
    # No Max-Age: the token's idle lifetime, which every page's use slides, is the session's
    # one. A cookie given the idle seconds at sign-in dropped out of the browser that long
    # after sign-in, however busy the agent (the token still alive). The browser forgets it
    # when it closes; a token that idled out sends the page to sign in (pages.guarded).
    # The sign-in cookie stays: another tab's sign-in form, still open, holds its value.
    _set(request, response, SESSION_COOKIE, token, None)


def set_signin_csrf(request: Request, response: Response, value: str) -> None:
    _set(request, response, SIGNIN_COOKIE, value, 3600)


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
