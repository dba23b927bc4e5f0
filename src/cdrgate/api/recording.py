"""recording/get_random and recording/download: parse, call the RecordingService, answer."""

from __future__ import annotations

from urllib.parse import quote, unquote, unquote_plus

from starlette.requests import Request
from starlette.responses import Response

from cdrgate.api.context import ApiCall
from cdrgate.api.envelope import CORS_HEADERS, PRIVATE_HEADERS, read_json_fields, success
from cdrgate.api.streaming import ExportResponse, finish_unsent
from cdrgate.api.threads import in_thread
from cdrgate.services.recordings import (
    DownloadRequest,
    RandomRequest,
    UnsatisfiableRange,
    range_asked,
)


async def get_random(request: Request, call: ApiCall) -> Response:
    fields = await read_json_fields(request, call.settings.max_body_bytes)
    ask = RandomRequest(
        token=request.query_params.get("token"),
        recording=fields.get("recording"),
        allowed_ip=fields.get("allowedip"),
        client_ip=call.client_ip,
    )
    random = await in_thread(call.services.recordings.issue_random, ask)
    return success(recording=ask.recording or "", random=random)


async def download(request: Request, call: ApiCall) -> Response:
    # Any request body is ignored (some clients POST the link); parameters are in the query.
    params = request.query_params
    recording, spaced = recording_readings(request, "recording")
    ask = DownloadRequest(
        token=params.get("token"),
        recording=recording,
        random=params.get("random"),
        client_ip=call.client_ip,
        api_version=call.version.path,
        range=range_asked(request.headers.get("range"), request.headers.get("if-range")),
        recording_spaced=spaced,
    )
    try:
        # Shielded like a CDR download's: cancelled at the drain's deadline while it runs, the
        # request waits for it, and a body made meanwhile is finished unsent (audited "cut",
        # its slot and file let go); anyio's hand-over let uvicorn's cancel through, and the
        # attempt had no record.
        body = await in_thread(call.services.recordings.download, ask, if_cancelled=finish_unsent)
    except UnsatisfiableRange as exc:
        headers = {**CORS_HEADERS, **PRIVATE_HEADERS, "Content-Range": f"bytes */{exc.size}"}
        return Response(status_code=416, headers=headers)
    headers = {
        **CORS_HEADERS,
        **body.transfer_headers(),
        **PRIVATE_HEADERS,  # a call's audio: kept by no cache, sniffed by no browser
        "Content-Disposition": _disposition(body.name),
        "Access-Control-Expose-Headers": "Content-Disposition, Content-Length, Content-Range",
    }
    return ExportResponse(body, headers, call.settings, status_code=body.status_code)


def recording_readings(request: Request, parameter: str) -> tuple[str | None, str | None]:
    """The link's recording name (``parameter``: ``recording`` here, ``name`` on the console's
    player) with "+" read as itself, and, where it holds one, read as a space (None where it
    holds none); the last of a repeated name wins, as elsewhere.

    Clients build the link by pasting the name from the CDR unencoded (the docs print it so;
    Python ``str.format`` with requests, Node template strings, Qt's QUrl, .NET's Uri all leave
    "+" as it is), and a device's names carry the caller, often ``+4179...``: read as a form
    value, "+" became a space, the name no longer the one the random was issued for, and
    every recording of a call from an E.164 number was refused (20012). A client that
    form-encodes the link (``urlencode``) sends a name's "+" as ``%2B``, read the same either
    way; a space as "+", which the service takes when that is the name of the random (or, on
    the console, when no recording has the "+" reading)."""
    value: str | None = None
    for pair in request.scope["query_string"].decode("latin-1").split("&"):
        name, _, raw = pair.partition("=")
        if unquote_plus(name) == parameter:
            value = raw
    if value is None:
        return None, None
    return unquote(value), (unquote_plus(value) if "+" in value else None)


def _disposition(name: str) -> str:
    """``attachment; filename="NAME"``; a name a quoted ASCII string cannot carry gets an
    ASCII stand-in plus the exact name in RFC 6266's ``filename*``."""
    plain = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    if plain == name:
        return f'attachment; filename="{name}"'
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"
