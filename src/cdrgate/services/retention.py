"""Yeastar-style automatic cleanup: keep at most N CDRs and/or none older than D days.

Age is measured against the server's local wall-clock time, the zone CDR times are
written in (see ``timefmt``). Removal runs in batches, each its own short transaction, so
imports and downloads are not held up behind one long delete.
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass

from cdrgate.clock import Clock
from cdrgate.errors import UsageError
from cdrgate.settings import Settings
from cdrgate.storage import partitions, retention
from cdrgate.storage.db import Database
from cdrgate.timefmt import format_pbx_time

DELETE_BATCH = 5000
DAY_S = 86400


@dataclass(frozen=True)
class RetentionPolicy:
    max_records: int = 0  # 0 = no limit
    max_age_days: int = 0  # 0 = no limit

    def __post_init__(self) -> None:
        if self.max_records < 0 or self.max_age_days < 0:
            raise UsageError("retention limits must be 0 (no limit) or positive")

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        return cls(settings.retention_max_records, settings.retention_max_age_days)

    @property
    def active(self) -> bool:
        return bool(self.max_records or self.max_age_days)


@dataclass(frozen=True)
class PruneReport:
    removed: int  # or, in a dry run, would be removed
    oldest: str | None  # timestart of the oldest affected CDR
    newest: str | None
    dry_run: bool


def wall_clock_now(clock: Clock) -> int:
    """The local wall-clock reading as wall-clock seconds (see ``timefmt``)."""
    return calendar.timegm(time.localtime(clock()))


def prune(
    db: Database, policy: RetentionPolicy, now_wall: int, dry_run: bool = False
) -> PruneReport:
    cutoff = now_wall - policy.max_age_days * DAY_S if policy.max_age_days else None
    with db.read() as conn:
        boundary = (
            retention.newest_to_remove(conn, policy.max_records) if policy.max_records else None
        )
        where = retention.condition(cutoff, boundary)
        count, low, high = retention.summary(conn, where)
    removed = count
    if not dry_run and count:
        removed = 0
        if cutoff is not None and db.dialect == "postgresql":
            # Whole months go as a catalog change; only the rest is deleted row by row.
            with db.write() as conn:
                dropped, busy = partitions.drop_months_before(conn, cutoff)
                if dropped or busy:
                    remaining = retention.summary(conn, where)[0]
                    # Deleting a busy month row by row is what partitions exist to avoid:
                    # the rest of the run waits for the next interval instead.
                    removed, count = count - remaining, 0 if busy else remaining
        # Bounded by the count taken above: rows arriving meanwhile wait for the next run.
        for _batch in range(count // DELETE_BATCH + 1 if count else 0):
            with db.write() as conn:
                done = retention.delete_batch(conn, where, DELETE_BATCH)
            removed += done
            if done < DELETE_BATCH:
                break
    return PruneReport(
        removed,
        format_pbx_time(low) if low is not None else None,
        format_pbx_time(high) if high is not None else None,
        dry_run,
    )
