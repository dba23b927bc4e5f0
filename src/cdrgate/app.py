"""``create_app(settings)``: wires storage and services into the ASGI application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cdrgate import __version__, console, opswiring
from cdrgate.api import query
from cdrgate.api.context import Services
from cdrgate.api.envelope import ClientAddress, ProxyPolicy, resolved_client
from cdrgate.api.http10 import Http10Compat
from cdrgate.api.openapi import OPENAPI_PATH, openapi_endpoint
from cdrgate.api.permit import PermittedNetworks
from cdrgate.api.routes import STANDARD_METHODS, ApiRoute
from cdrgate.background import log_failed_run, to_the_end
from cdrgate.clock import Clock, system_clock
from cdrgate.faults import FaultInjector, FaultPlan
from cdrgate.ingest.push import PushReceiver
from cdrgate.iprules import parse_networks
from cdrgate.logredact import redact
from cdrgate.services.audit import DownloadAudit
from cdrgate.services.auth import AuthService
from cdrgate.services.downloads import DownloadService
from cdrgate.services.export import ExportSlots
from cdrgate.services.query import QueryService
from cdrgate.services.recordings import RecordingService
from cdrgate.services.retention_schedule import prune_forever
from cdrgate.settings import Settings
from cdrgate.storage.db import Database

log = logging.getLogger("cdrgate")
access_log = logging.getLogger("cdrgate.access")

PURGE_INTERVAL_S = 60.0


def build_services(settings: Settings, db: Database, clock: Clock = system_clock) -> Services:
    auth = AuthService(db, settings, clock)
    audit = DownloadAudit(db, settings, clock)
    # One set of export slots for every long transfer: CDR downloads, recordings, query CSV.
    slots = ExportSlots(settings.export_max_concurrent, settings.export_max_per_account)
    return Services(
        settings=settings,
        auth=auth,
        downloads=DownloadService(db, settings, clock, auth, audit, slots),
        push=PushReceiver(db, clock),
        proxies=ProxyPolicy.parse(settings.trusted_proxies),
        recordings=RecordingService(db, settings, auth, audit, slots),
        query=QueryService(db, settings, auth, slots),
    )


def serving_database(settings: Settings) -> Database:
    """The database a server uses: the primary, and the replicas its exports may read."""
    return Database(
        settings.database,
        replicas=settings.replicas,
        max_replica_lag_ms=settings.max_replica_lag_ms,
        mmap_mib=settings.sqlite_mmap_mib,
    )


async def index(_request: Request) -> Response:
    return JSONResponse({"service": "cdrgate", "version": __version__, "api": ["v1.1.0", "v2.0.0"]})


def create_app(
    settings: Settings,
    *,
    database: Database | None = None,
    clock: Clock = system_clock,
    faults: FaultPlan | None = None,
) -> Starlette:
    db = database if database is not None else serving_database(settings)
    services = build_services(settings, db, clock)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        purger = asyncio.create_task(_purge_forever(services))
        pruner = asyncio.create_task(prune_forever(db, settings, clock))
        try:
            yield
        finally:
            purger.cancel()
            pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purger
            with contextlib.suppress(asyncio.CancelledError):
                await pruner
            await db.close_on_loop()  # this loop's asyncpg pool (``storage/pg_loop.py``)
            if database is None:
                db.dispose()

    app = Starlette(
        routes=[
            # First: most requests are the protocol's, and no other route is under /api/.
            ApiRoute(list(STANDARD_METHODS)),
            Route("/", index, methods=["GET"]),
            Route(OPENAPI_PATH, openapi_endpoint, methods=["GET"]),
            *opswiring.routes(settings, db, clock),
            *query.ROUTES,
            *console.routes(),
        ],
        middleware=[
            *opswiring.outer_middleware(db),
            *([Middleware(AccessLog)] if settings.access_log else []),
            *opswiring.metrics_middleware(settings),
            Middleware(Http10Compat, max_bytes=settings.http10_spool_max_bytes),
            Middleware(ClientAddress, proxies=services.proxies),
            *_permit_middleware(settings),
            *([Middleware(FaultInjector, plan=faults)] if faults is not None else []),
        ],
        lifespan=lifespan,
    )
    app.state.services = services
    return app


def _permit_middleware(settings: Settings) -> list[Middleware]:
    if not settings.permitted_networks:
        return []
    return [Middleware(PermittedNetworks, networks=parse_networks(settings.permitted_networks))]


async def _purge_forever(services: Services) -> None:
    """Expired tokens, spent randoms and lapsed lockouts must not pile up."""
    while True:
        try:
            await to_the_end(services.auth.purge_expired)
            await to_the_end(services.downloads.purge_spent)
            await to_the_end(services.recordings.purge_spent)
            await to_the_end(services.downloads.audit.purge_old)
        except Exception as exc:  # a locked or absent database must not kill the loop
            log_failed_run(log, "purge of expired state failed", exc)
        await asyncio.sleep(PURGE_INTERVAL_S)


class AccessLog:
    """One line per request, with tokens and randoms redacted from the query string."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        sent = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            # Only when the line is written: redact() costs 3-15 us a line (bench/log_redact.py).
            if access_log.isEnabledFor(logging.INFO):
                client = _client_address(scope)
                query = scope.get("query_string", b"").decode("latin-1")
                target = scope["path"] + (f"?{query}" if query else "")
                access_log.info(
                    '%s "%s %s" %s %d %.1fms',
                    client,
                    scope["method"],
                    redact(target),
                    status,
                    sent,
                    (time.perf_counter() - started) * 1000,
                )


def _client_address(scope: Scope) -> str:
    """The client as every rule saw it: behind a --trusted-proxy, the address it forwarded
    (as nginx's realip module logs it); else the socket peer."""
    resolved = resolved_client(scope)
    if resolved is not None:
        return resolved
    peer = scope.get("client")
    return str(peer[0]) if peer else "-"
