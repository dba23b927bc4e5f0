"""The plan PostgreSQL runs for a small download's day read, as the server prepares it."""

from __future__ import annotations

from typing import Any

from cdrgate.storage.cdrs import _postgres_statement
from cdrgate.storage.db import Database


def day_read_scans(db: Database, exts: list[str], start: int, end: int) -> list[dict[str, Any]]:
    """The scans of tables (the plan's nodes naming a relation) of ``EXPLAIN (ANALYZE)`` of
    the driver's day read of ``exts`` over ``start``..``end`` (LIMIT 1001)."""
    stmt = _postgres_statement(True, True, len(exts))
    params = {"exts": exts, "start": start, "end": end, "limit": 1001}
    with db.read() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        explain = raw.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + stmt.sql, stmt.args(params))
        return _scans(explain.fetchone()[0][0]["Plan"])


def _scans(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node] if "Relation Name" in node else []
    for child in node.get("Plans", []):
        found += _scans(child)
    return found
