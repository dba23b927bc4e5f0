"""What a store holds (``cdrgate stats``): rows, time span, types, statuses, extensions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cdrgate.storage import stats
from cdrgate.storage.db import Database
from cdrgate.timefmt import format_pbx_time

TOP_EXTENSIONS = 10


@dataclass(frozen=True)
class StoreStats:
    rows: int
    first: str | None  # timestart of the oldest CDR, PBX local time
    last: str | None
    types: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    extensions: int = 0
    top_extensions: list[tuple[str, int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "first": self.first,
            "last": self.last,
            "types": self.types,
            "statuses": self.statuses,
            "extensions": self.extensions,
            "top_extensions": [{"extension": e, "calls": n} for e, n in self.top_extensions],
        }


def store_stats(db: Database) -> StoreStats:
    # One read transaction, so the numbers agree with each other under concurrent imports.
    with db.read() as conn:
        rows, first, last = stats.span(conn)
        types = stats.counts_by(conn, "type")
        statuses = stats.counts_by(conn, "status")
        extensions = stats.extension_calls(conn)
    return StoreStats(
        rows=rows,
        first=None if first is None else format_pbx_time(first),
        last=None if last is None else format_pbx_time(last),
        types=types,
        statuses=statuses,
        extensions=len(extensions),
        top_extensions=extensions[:TOP_EXTENSIONS],
    )
