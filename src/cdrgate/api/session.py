"""login, heartbeat, logout."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from cdrgate.api.context import ApiCall
from cdrgate.api.envelope import read_json_fields, required, success
from cdrgate.services.auth import EVENT_FIELDS


async def login(request: Request, call: ApiCall) -> Response:
    fields = await read_json_fields(request, call.settings.max_body_bytes)
    username = required(fields, "username")
    password = required(fields, "password")
    event = {key: value for key, value in fields.items() if key in EVENT_FIELDS}
    login = call.services.auth.login
    token = await run_in_threadpool(login, username, password, call.client_ip, event)
    return success(token=token)


async def heartbeat(request: Request, call: ApiCall) -> Response:
    fields = await read_json_fields(request, call.settings.max_body_bytes)
    event = {key: value for key, value in fields.items() if key in EVENT_FIELDS}
    token = request.query_params.get("token")
    await run_in_threadpool(call.services.auth.heartbeat, token, event)
    return success()


async def logout(request: Request, call: ApiCall) -> Response:
    await read_json_fields(request, call.settings.max_body_bytes)
    await run_in_threadpool(call.services.auth.logout, request.query_params.get("token"))
    return success()
