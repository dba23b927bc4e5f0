"""The server's retention schedule: CDR limits and recording files, every interval.

Every node and worker runs the schedule; a database lock lets one of them do each run.
"""

from __future__ import annotations

import asyncio
import logging

from cdrgate.background import log_failed_run, to_the_end
from cdrgate.clock import Clock
from cdrgate.services.recording_files import RecordingPruneReport, prune_with_recordings
from cdrgate.services.retention import PruneReport, RetentionPolicy, wall_clock_now
from cdrgate.settings import Settings
from cdrgate.storage import retention
from cdrgate.storage.db import Database

log = logging.getLogger("cdrgate.retention")

Reports = tuple[PruneReport | None, RecordingPruneReport]


def prune_alone(db: Database, settings: Settings, now_wall: int) -> Reports | None:
    """One run of the limits in ``settings`` (recording files included when a recordings
    folder is served), unless another node or worker is running it now (then None)."""
    with retention.run_alone(db) as mine:
        if not mine:
            return None
        return prune_with_recordings(
            db,
            RetentionPolicy.from_settings(settings),
            now_wall,
            root=settings.recordings or None,
            recordings_max_age_days=settings.recordings_max_age_days,
        )


def has_work(settings: Settings) -> bool:
    files = bool(settings.recordings) and settings.recordings_max_age_days > 0
    return RetentionPolicy.from_settings(settings).active or files


async def prune_forever(db: Database, settings: Settings, clock: Clock) -> None:
    """The server's schedule; returns at once when no limit or no interval is configured."""
    interval = settings.retention_interval_seconds
    if not has_work(settings) or interval <= 0:
        return
    while True:
        try:
            reports = await to_the_end(prune_alone, db, settings, wall_clock_now(clock))
            if reports is not None:
                cdrs, files = reports
                if cdrs is not None and cdrs.removed:
                    log.info(
                        "retention removed %d CDRs (%s .. %s)",
                        cdrs.removed,
                        cdrs.oldest,
                        cdrs.newest,
                    )
                if files.files:
                    log.info("retention removed %d recording files", len(files.files))
                if kept := files.kept_line():
                    log.warning("retention %s", kept)
        except Exception as exc:  # a locked or absent database must not kill the loop
            log_failed_run(log, "retention run failed", exc)
        await asyncio.sleep(interval)
