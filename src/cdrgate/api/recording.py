"""recording/get_random and recording/download: parse, call the RecordingService, answer."""

from __future__ import annotations

from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from cdrgate.api.context import ApiVersion, Services
from cdrgate.api.envelope import CORS_HEADERS, read_json_fields, success
from cdrgate.services.recordings import (
    DownloadRequest,
    RandomRequest,
    RecordingBody,
    UnsatisfiableRange,
)


async def get_random(request: Request, services: Services, _version: ApiVersion) -> Response:
    fields = await read_json_fields(request, services.settings.max_body_bytes)
    parsed = RandomRequest(
        token=request.query_params.get("token"),
        recording=fields.get("recording"),
        allowed_ip=fields.get("allowedip"),
        client_ip=services.proxies.client_ip(request),
    )
    random = await run_in_threadpool(services.recordings.issue_random, parsed)
    return success(recording=fields.get("recording", ""), random=random)


async def download(request: Request, services: Services, version: ApiVersion) -> Response:
    # Any request body is ignored (some clients POST the link); parameters are in the query.
    params = request.query_params
    parsed = DownloadRequest(
        token=params.get("token"),
        recording=params.get("recording"),
        random=params.get("random"),
        client_ip=services.proxies.client_ip(request),
        api_version=version.path,
        range=request.headers.get("range"),
    )
    try:
        body = await run_in_threadpool(services.recordings.download, parsed)
    except UnsatisfiableRange as exc:
        headers = {**CORS_HEADERS, "Content-Range": f"bytes */{exc.size}"}
        return Response(status_code=416, headers=headers)
    return _file_response(body)


def _file_response(body: RecordingBody) -> Response:
    headers = {
        **CORS_HEADERS,
        "Content-Disposition": _disposition(body.name),
        "Content-Length": str(body.length),
        "Accept-Ranges": "bytes",
        "Access-Control-Expose-Headers": "Content-Disposition, Content-Length, Content-Range",
        "Cache-Control": "no-store",
    }
    if body.partial:
        headers["Content-Range"] = f"bytes {body.first}-{body.last}/{body.size}"
    return StreamingResponse(
        body.chunks,
        status_code=206 if body.partial else 200,
        media_type=body.content_type,
        headers=headers,
    )


def _disposition(name: str) -> str:
    """``attachment; filename="NAME"``; a name a quoted ASCII string cannot carry gets an
    ASCII stand-in plus the exact name in RFC 6266's ``filename*``."""
    plain = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    if plain == name:
        return f'attachment; filename="{name}"'
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"
