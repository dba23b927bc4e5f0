"""Reading the download audit back (``cdrgate audit``); writing it is ``services.audit``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row

from cdrgate.storage import audit
from cdrgate.storage.db import Database


@dataclass(frozen=True)
class AuditQuery:
    since_ms: int | None = None
    until_ms: int | None = None
    account: str | None = None
    client_ip: str | None = None
    outcome: str | None = None
    limit: int = 100


def attempts(db: Database, query: AuditQuery) -> list[Row[Any]]:
    """The matching download attempts, newest first, at most ``query.limit``."""
    with db.read() as conn:
        return audit.query(
            conn,
            since_ms=query.since_ms,
            until_ms=query.until_ms,
            account=query.account,
            client_ip=query.client_ip,
            outcome=query.outcome,
            limit=query.limit,
        )
