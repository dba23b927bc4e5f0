"""What the operational modules add to the app, in one place for ``create_app``: health probes
and drain bookkeeping outermost (before the access log and the permit list), HTTP metrics
around the API, and the ``/metrics`` route behind the permit list like the API itself."""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.routing import Route

from cdrgate.clock import Clock
from cdrgate.drain import DrainAudit
from cdrgate.health import HealthProbes, Readiness
from cdrgate.httpmetrics import METRICS_PATH, HttpMetrics, metrics_endpoint
from cdrgate.settings import Settings
from cdrgate.storage.db import Database


def outer_middleware(db: Database) -> list[Middleware]:
    return [Middleware(HealthProbes, readiness=Readiness(db)), Middleware(DrainAudit)]


def metrics_middleware(settings: Settings) -> list[Middleware]:
    return [Middleware(HttpMetrics)] if settings.metrics else []


def routes(settings: Settings, db: Database, clock: Clock) -> list[Route]:
    if not settings.metrics:
        return []
    return [Route(METRICS_PATH, metrics_endpoint(db, clock), methods=["GET"])]
