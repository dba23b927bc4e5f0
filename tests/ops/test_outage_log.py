"""A database outage in the server's background loops (the purge, retention): one line a run."""

from __future__ import annotations

import logging

import pytest
from starlette.testclient import TestClient

from cdrgate.app import create_app
from cdrgate.settings import Settings
from cdrgate.storage.db import Database
from tests.waiting import wait_until

UNREACHABLE = "postgresql://cdrgate@127.0.0.1:9/none"  # port 9 (discard): nothing listens
LINES = ("purge of expired state failed", "retention run failed")


def test_each_background_run_that_meets_an_outage_logs_one_line_with_its_reason(
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.WARNING, logger="cdrgate")
    settings = Settings(
        database=UNREACHABLE,
        access_log=False,
        retention_max_records=1,
        retention_interval_seconds=1,
    )
    db = Database(UNREACHABLE, pool_pre_ping=False)
    with TestClient(create_app(settings, database=db)):

        def both_ran() -> bool:
            return all(
                any(r.getMessage().startswith(line) for r in caplog.records) for line in LINES
            )

        wait_until(both_ran, lambda: str([r.getMessage() for r in caplog.records]))
    db.dispose()
    failed = [r for r in caplog.records if r.getMessage().startswith(LINES)]
    # Before: each run logged its traceback (two chained, ~130 lines), every minute for the
    # purge, for as long as the database was down.
    assert [r.exc_info for r in failed] == [None] * len(failed)
    assert all("Connection refused" in r.getMessage() for r in failed)
