"""cdr/push: NewCdr events pushed by a PBX or a CDR hook, authorised by an ingest key.

HTTP status tells a retrying sender what to do (a Yeastar PBX re-sends until it gets 200):
200 = stored, or refused for good (bad JSON or event, see ``errno``); 401 = missing or
unknown key, re-send once fixed; 503 = store unavailable, re-send later.
"""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from cdrgate import metrics
from cdrgate.api.context import ApiCall
from cdrgate.api.envelope import CORS_HEADERS, PRIVATE_HEADERS, success
from cdrgate.errors import ApiError, Errno, StorageUnavailable
from cdrgate.ingest.push import BadEvent, parse_events

log = logging.getLogger("cdrgate.push")
KEY_ERRORS = frozenset({Errno.TOKEN_EMPTY, Errno.TOKEN_UNKNOWN})


async def push(request: Request, call: ApiCall) -> Response:
    try:
        key = _bearer(request)
        events = parse_events(await _body(request, call.settings.ingest_max_body_bytes))
        result = await run_in_threadpool(call.services.push.receive, key, events)
        metrics.record_ingested("push", result.inserted)
    except BadEvent as exc:
        return _failed(exc.errno, 200, index=str(exc.index), reason=exc.reason)
    except ApiError as exc:
        return _failed(exc.errno, 401 if exc.errno in KEY_ERRORS else 200, reason=exc.detail)
    except ClientDisconnect:
        # The sender left mid-body: nothing was stored and nobody waits for an answer. The
        # dispatcher logs it and answers 499 as for any endpoint; it is no store failure.
        raise
    except StorageUnavailable as exc:
        # Its commit may have landed with its answer lost: the PBX sends it again on the 503,
        # and a stored copy is then a duplicate, skipped.
        log.error("push answered 503, to be sent again (a copy already stored is skipped): %s",
                  exc)  # fmt: skip
        return _failed(Errno.APISRV_DOWN, 503, reason="store unavailable, send again later")
    except Exception:  # e.g. a raw driver error from the bulk insert: not stored, so retry
        log.exception("push answered 503, to be sent again")
        return _failed(Errno.APISRV_DOWN, 503, reason="not stored, send again later")
    return success(
        received=str(result.received),
        inserted=str(result.inserted),
        duplicates=str(result.duplicates),
        ignored=str(result.ignored),
    )


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


async def _body(request: Request, limit: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(Errno.JSON_ONLY, f"body larger than {limit} bytes")
    return bytes(body)


def _failed(errno: Errno, status: int, **extra: str) -> Response:
    content = {"status": "Failed", "errno": errno.value, **extra}
    headers = {**CORS_HEADERS, **PRIVATE_HEADERS}
    return JSONResponse(content, status_code=status, headers=headers)
