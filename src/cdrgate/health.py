"""``/healthz`` (the process answers) and ``/readyz`` (the database is reachable, its schema
is this code's, and, for SQLite, the file at the configured path is still the one opened).

Both are answered by a middleware placed outside the permit list, so a load balancer or
orchestrator probe works from any address; they reveal nothing beyond a short reason.
"""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from cdrgate.errors import CdrgateError
from cdrgate.storage import schema
from cdrgate.storage.db import Database

log = logging.getLogger("cdrgate.health")

HEALTHZ = "/healthz"
READYZ = "/readyz"


class Readiness:
    """What ``/readyz`` checks: the database answers, its schema is this code's, and (SQLite)
    its file is still the one this process opened (``Database.check_file``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def problem(self) -> str | None:
        """None when ready, else the reason in a few words."""
        try:
            self.db.check_file()
            current = schema.stored_revision(self.db)
        except CdrgateError as exc:
            return f"database unavailable: {exc}"
        except Exception as exc:  # a probe must answer, whatever the driver raised
            log.warning("readiness check failed", exc_info=True)
            return f"database check failed: {type(exc).__name__}"
        head = schema.head_revision()
        if current != head:
            return f"schema at {current or 'nothing'}, this cdrgate needs {head}: run cdrgate db upgrade"
        return None


class HealthProbes:
    """ASGI middleware answering the two probe paths before anything else runs."""

    def __init__(self, app: ASGIApp, readiness: Readiness) -> None:
        self.app = app
        self.readiness = readiness

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path") if scope["type"] == "http" else None
        if path == HEALTHZ:
            response = JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})
        elif path == READYZ:
            reason = await run_in_threadpool(self.readiness.problem)
            if reason is None:
                response = JSONResponse({"status": "ready"}, headers={"Cache-Control": "no-store"})
            else:
                response = JSONResponse(
                    {"status": "unavailable", "reason": reason},
                    status_code=503,
                    headers={"Cache-Control": "no-store"},
                )
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)
