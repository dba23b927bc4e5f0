"""login, heartbeat, logout."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from cdrgate.api.context import ApiVersion, Services
from cdrgate.api.envelope import read_json_fields, required, success
from cdrgate.services.auth import EVENT_FIELDS


async def login(request: Request, services: Services, _version: ApiVersion) -> Response:
    fields = await read_json_fields(request, services.settings.max_body_bytes)
    username = required(fields, "username")
    password = required(fields, "password")
    client_ip = services.proxies.client_ip(request)
    event = {key: value for key, value in fields.items() if key in EVENT_FIELDS}
    token = await run_in_threadpool(services.auth.login, username, password, client_ip, event)
    return success(token=token)


async def heartbeat(request: Request, services: Services, _version: ApiVersion) -> Response:
    fields = await read_json_fields(request, services.settings.max_body_bytes)
    event = {key: value for key, value in fields.items() if key in EVENT_FIELDS}
    await run_in_threadpool(services.auth.heartbeat, request.query_params.get("token"), event)
    return success()


async def logout(request: Request, services: Services, _version: ApiVersion) -> Response:
    await read_json_fields(request, services.settings.max_body_bytes)
    await run_in_threadpool(services.auth.logout, request.query_params.get("token"))
    return success()
