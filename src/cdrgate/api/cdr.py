"""cdr/get_random and cdr/download."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from cdrgate.api.context import ApiVersion, Services
from cdrgate.api.envelope import CORS_HEADERS, read_json_fields, required, success
from cdrgate.errors import ApiError, Errno
from cdrgate.services.downloads import Export, parse_allowed_ip, parse_filter
from cdrgate.timefmt import format_pbx_time


def _selector(params: Mapping[str, str], version: ApiVersion) -> str | None:
    value = params.get(version.selector)
    return value if value is not None else params.get(version.other_selector)


async def get_random(request: Request, services: Services, version: ApiVersion) -> Response:
    fields = await read_json_fields(request, services.settings.max_body_bytes)
    token = request.query_params.get("token")
    client_ip = services.proxies.client_ip(request)

    def work() -> str:
        session = services.auth.authenticate(token)
        selector = _selector(fields, version)
        if selector is None or not selector.strip():
            raise ApiError(Errno.PARAMETER_EMPTY)
        flt = parse_filter(selector, required(fields, "starttime"), required(fields, "endtime"))
        allowed = parse_allowed_ip(fields.get("allowedip"))
        return services.downloads.issue_random(session, flt, client_ip, allowed)

    random = await run_in_threadpool(work)
    # Echo the inputs exactly as sent: some clients build the link from the echo.
    return success(
        **{version.selector: _selector(fields, version) or ""},
        starttime=fields["starttime"],
        endtime=fields["endtime"],
        random=random,
    )


async def download(request: Request, services: Services, version: ApiVersion) -> Response:
    # Any request body (axios/Guzzle POST the link) is ignored; parameters are in the query.
    params = request.query_params
    client_ip = services.proxies.client_ip(request)
    selector = _selector(params, version)
    attempt = services.audit.begin(
        client_ip, version.path, selector, params.get("starttime"), params.get("endtime")
    )

    def work() -> tuple[Export, str]:
        try:
            return open_download()
        except ApiError as exc:
            services.audit.failed(attempt, exc.errno)
            raise
        except Exception:
            services.audit.failed(attempt, Errno.APISRV_DOWN)
            raise

    def open_download() -> tuple[Export, str]:
        session = services.auth.authenticate(params.get("token"))
        attempt.account = session.account
        flt = parse_filter(selector, params.get("starttime"), params.get("endtime"))
        services.downloads.redeem(session, flt, params.get("random"), client_ip)
        export = services.downloads.open_export(flt)
        name = "cdr-{}-{}.csv".format(
            format_pbx_time(flt.start_ts).replace(" ", "_").replace(":", ""),
            format_pbx_time(flt.end_ts).replace(" ", "_").replace(":", ""),
        )
        return export, name

    export, filename = await run_in_threadpool(work)
    headers = {
        **CORS_HEADERS,
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Access-Control-Expose-Headers": "Content-Disposition",
        "Cache-Control": "no-store",
    }
    body = services.audit.streamed(attempt, export)
    return StreamingResponse(body, media_type="text/csv; charset=utf-8", headers=headers)
