"""The console's pages: parse the request, call the services as the signed-in user, render.

Every data call goes through the same services as the JSON API, with the session's token, so
the console adds no data rules: a filter the API refuses is refused here (shown on the page),
and an expired token sends the browser back to sign in.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from urllib.parse import parse_qsl, quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import RedirectResponse, Response

from cdrgate.api.context import Services
from cdrgate.api.envelope import CLIENT_LEFT, client_ip
from cdrgate.api.query import csv_response
from cdrgate.api.recording import recording_readings
from cdrgate.api.streaming import ExportResponse, finish_unsent
from cdrgate.api.threads import in_thread
from cdrgate.console import dashboard, listing
from cdrgate.console.reach import PageQuery
from cdrgate.console.render import PAGE_HEADERS, page
from cdrgate.console.session import (
    CSRF_FIELD,
    csrf_for,
    csrf_matches,
    end_session,
    session_token,
    set_session,
    set_signin_csrf,
    signin_csrf,
    signin_csrf_matches,
)
from cdrgate.errors import ApiError, BadParameter, Errno, StorageUnavailable
from cdrgate.logredact import redact
from cdrgate.services.query import STATUSES, TYPES, CdrPage, CsvStream
from cdrgate.services.recordings import PlayRequest, UnsatisfiableRange, range_asked

log = logging.getLogger("cdrgate.console")

MAX_FORM_BYTES = 8192
SIGNED_OUT = (Errno.TOKEN_EMPTY, Errno.TOKEN_UNKNOWN, Errno.TOKEN_EXPIRED)

Handler = Callable[[Request], Awaitable[Response]]


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _to_signin(request: Request) -> Response:
    # A CSV download is no page to come back to (the tab would stay on the sign-in form):
    # back to the list it was asked from, with the same filters, to click it again.
    path = "/ui/cdrs" if request.url.path == "/ui/cdrs.csv" else request.url.path
    here = path + (f"?{request.url.query}" if request.url.query else "")
    response = RedirectResponse("/ui/?" + urlencode({"next": here}), status_code=303)
    end_session(response)
    return response


def _safe_next(target: str | None) -> str:
    """Only a console path: a sign-in link must not send anyone to another site."""
    if target and target.startswith("/ui/") and not target.startswith("//"):
        return target
    return "/ui/"


async def _form(request: Request) -> dict[str, str]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise BadParameter("form", "too large")
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def guarded(handler: Handler) -> Handler:
    """Signed-out visitors go to sign in; bad input, and a bug, are a page saying so, never a
    traceback or a bare 500."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            if exc.errno in SIGNED_OUT:
                return _to_signin(request)
            if exc.errno == Errno.SERVER_BUSY:
                return _problem(request, 503, "Too many downloads in progress; try again shortly.")
            return _problem(request, 400, exc.detail or exc.errno.name.replace("_", " ").lower())
        except BadParameter as exc:
            return _problem(request, 400, f"{exc.parameter}: {exc.reason}")
        except StorageUnavailable as exc:
            log.error("storage unavailable: %s", exc)
            return _problem(
                request, 503, "The database is down or did not answer in time; try again shortly."
            )
        except ClientDisconnect:
            # Gone before its form was whole: nobody to answer (as the API, api/routes.py).
            return Response(status_code=CLIENT_LEFT)
        except Exception:
            # A bug: logged here once with its traceback, and the person sees a console page
            # saying so, not Starlette's bare "Internal Server Error" (as /v1, api/query.py).
            log.exception("unexpected error on %s %s", request.method, redact(request.url.path))
            return _problem(request, 500, "Something went wrong on the server; its log says what.")

    return endpoint


def _problem(request: Request, status: int, message: str) -> Response:
    token = session_token(request)
    return page("problem.html", status, message=message, csrf=csrf_for(token) if token else None)


def _signin_page(request: Request, status: int = 200, message: str | None = None) -> Response:
    csrf = signin_csrf(request)
    response = page(
        # Not ``csrf``: that one is a session's, and base.html shows the signed-in header
        # (Dashboard, Calls, Sign out) for it.
        "signin.html", status, message=message, signin_csrf=csrf,
        next=_safe_next(request.query_params.get("next")),
        username=request.query_params.get("username", ""),
    )  # fmt: skip
    set_signin_csrf(request, response, csrf)
    return response


async def unknown_page(request: Request) -> Response:
    return _problem(request, 404, "No such page in the console.")


async def to_home(request: Request) -> Response:
    return RedirectResponse("/ui/", status_code=308)


def form_target(post: Handler) -> Handler:
    """``post`` for a POST; any other method the route takes (GET, HEAD) is sent to the
    console's home (the sign-in form, or the dashboard when signed in), changing nothing."""

    async def endpoint(request: Request) -> Response:
        if request.method == "POST":
            return await post(request)
        return RedirectResponse("/ui/", status_code=303)

    return endpoint


async def home(request: Request) -> Response:
    """``/ui/``: the dashboard when signed in, the sign-in form otherwise."""
    token = session_token(request)
    if token is None:
        return _signin_page(request)
    one = PageQuery(_services(request).query)
    try:
        day = dashboard.parse_day(request.query_params.get("day"), datetime.now())
        board = await run_in_threadpool(dashboard.build, one.query.stats, token, day)
    except ApiError as exc:
        if exc.errno in SIGNED_OUT:
            return _signin_page(request)
        raise
    return page(
        "dashboard.html", board=board, csrf=csrf_for(token), nav="dashboard", reach=one.reach()
    )


async def sign_in(request: Request) -> Response:
    form = await _form(request)
    if not signin_csrf_matches(request, form.get(CSRF_FIELD)):
        return _signin_page(request, 403, "The form expired. Please sign in again.")
    username = form.get("username", "").strip()
    password = form.get("password", "")
    md5 = hashlib.md5(password.encode(), usedforsecurity=False).hexdigest()
    auth = _services(request).auth
    try:
        token = await run_in_threadpool(auth.login, username, md5, client_ip(request), {})
    except ApiError as exc:
        if exc.errno == Errno.LOCKED_OUT:
            minutes = max(1, auth.settings.lockout_seconds // 60)
            message = f"Too many failed sign-ins from your address. Try again in {minutes} minutes."
            return _signin_page(request, 429, message)
        return _signin_page(request, 401, "Wrong username or password.")
    response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
    set_session(request, response, token)
    return response


async def sign_out(request: Request) -> Response:
    token = session_token(request)
    form = await _form(request)
    if token is None:
        return RedirectResponse("/ui/", status_code=303)
    if not csrf_matches(token, form.get(CSRF_FIELD)):
        return _problem(request, 403, "The form expired. Reload the page and try again.")
    try:
        await run_in_threadpool(_services(request).auth.logout, token)
    except ApiError:
        pass  # already expired or gone: the cookie goes all the same
    response = RedirectResponse("/ui/", status_code=303)
    end_session(response)
    return response


async def cdrs(request: Request) -> Response:
    token = session_token(request)
    if token is None:
        return _to_signin(request)
    view = listing.Listing.from_query(request.query_params.multi_items())
    one = PageQuery(_services(request).query)
    answer = await run_in_threadpool(one.query.search, view.request(token))
    assert isinstance(answer, CdrPage)  # a JSON page: the request never asks for CSV
    return page(
        "cdrs.html", view=view, result=listing.page_of(view, answer), csrf=csrf_for(token),
        statuses=STATUSES, types=TYPES, sortable=listing.SORTABLE, nav="cdrs", reach=one.reach(),
    )  # fmt: skip


async def cdrs_csv(request: Request) -> Response:
    token = session_token(request)
    if token is None:
        return _to_signin(request)
    view = listing.Listing.from_query(request.query_params.multi_items())
    stream = await run_in_threadpool(_services(request).query.search, view.csv_request(token))
    assert isinstance(stream, CsvStream)
    return csv_response(stream, _services(request).settings)


async def recording(request: Request) -> Response:
    """A call's recording for the page's player: Range requests answer 206, so it seeks."""
    token = session_token(request)
    if token is None:
        return _to_signin(request)
    # "+" read as the name's own, as the device API reads it: a name pasted from a CDR keeps
    # its caller's +4179...; a link whose "+" meant a space still plays.
    name, spaced = recording_readings(request, "name")
    asked = range_asked(request.headers.get("range"), request.headers.get("if-range"))
    ask = PlayRequest(token, name, client_ip(request), asked, recording_spaced=spaced)
    try:
        # Shielded, its body finished unsent if cancelled meanwhile: as api/recording.py's.
        body = await in_thread(_services(request).recordings.play, ask, if_cancelled=finish_unsent)
    except UnsatisfiableRange as exc:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{exc.size}"})
    except ApiError as exc:
        if exc.errno == Errno.RECORDING_NOT_FOUND:
            return _problem(request, 404, "This call's recording is not on the server.")
        raise
    disposition = "attachment" if request.query_params.get("download") else "inline"
    headers = {
        **body.transfer_headers(),
        "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(body.name, safe='')}",
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": PAGE_HEADERS["X-Content-Type-Options"],
    }
    settings = _services(request).settings
    return ExportResponse(body, headers, settings, status_code=body.status_code)
