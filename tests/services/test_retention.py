"""Retention: keep at most N CDRs and/or none older than D days, by command or schedule."""

from __future__ import annotations

import asyncio
import time

from typer.testing import CliRunner

from cdrgate.cli import app
from cdrgate.clock import ManualClock
from cdrgate.services.retention import RetentionPolicy, prune, wall_clock_now
from cdrgate.services.retention_schedule import prune_forever
from cdrgate.settings import Settings
from cdrgate.timefmt import parse_pbx_time
from tests.conftest import make_cdr
from tests.ingest.conftest import stored_lines

runner = CliRunner()
NOW = parse_pbx_time("2026-05-28 12:00:00")


def days_ago(days: int, n: int):
    ts = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(NOW - days * 86400))
    return make_cdr(callid=f"{ts[:10]}.{n}", timestart=ts)


def callids(db) -> list[str]:
    return [line.split(",")[0] for line in stored_lines(db)]


def test_max_records_keeps_the_newest(db, add_cdrs):
    add_cdrs(*(days_ago(d, 1) for d in (3, 1, 2, 0)))
    report = prune(db, RetentionPolicy(max_records=2), NOW)
    assert (report.removed, report.oldest, report.newest) == (
        2, "2026-05-25 12:00:00", "2026-05-26 12:00:00",
    )  # fmt: skip
    assert callids(db) == ["2026-05-27.1", "2026-05-28.1"]


def test_ties_on_time_are_broken_in_download_order(db, add_cdrs):
    add_cdrs(days_ago(0, 1), days_ago(0, 2), days_ago(0, 3))
    prune(db, RetentionPolicy(max_records=2), NOW)
    assert callids(db) == ["2026-05-28.2", "2026-05-28.3"]


def test_max_age_removes_older_calls_only(db, add_cdrs):
    add_cdrs(days_ago(40, 1), days_ago(31, 1), days_ago(29, 1))
    assert prune(db, RetentionPolicy(max_age_days=30), NOW).removed == 2
    assert callids(db) == ["2026-04-29.1"]


def test_max_age_across_months_removes_whole_and_partial_months(db, add_cdrs):
    # On PostgreSQL whole months go as dropped partitions, the partial month row by row.
    add_cdrs(*(days_ago(d, n) for d in (130, 100, 75, 60, 45, 20) for n in (1, 2)))
    report = prune(db, RetentionPolicy(max_age_days=50), NOW)
    assert (report.removed, report.oldest) == (8, "2026-01-18 12:00:00")
    assert callids(db) == ["2026-04-13.1", "2026-04-13.2", "2026-05-08.1", "2026-05-08.2"]
    assert prune(db, RetentionPolicy(max_age_days=50), NOW).removed == 0


def test_both_limits_remove_what_either_would(db, add_cdrs):
    add_cdrs(days_ago(40, 1), days_ago(2, 1), days_ago(1, 1), days_ago(0, 1))
    assert prune(db, RetentionPolicy(max_records=2, max_age_days=30), NOW).removed == 2
    assert callids(db) == ["2026-05-27.1", "2026-05-28.1"]


def test_dry_run_reports_and_removes_nothing(db, add_cdrs):
    add_cdrs(days_ago(3, 1), days_ago(2, 1), days_ago(1, 1))
    report = prune(db, RetentionPolicy(max_records=1), NOW, dry_run=True)
    assert (report.removed, report.dry_run) == (2, True)
    assert len(callids(db)) == 3


def test_prune_command_dry_run_then_for_real(db, add_cdrs):
    add_cdrs(days_ago(3, 1), days_ago(2, 1), days_ago(1, 1))
    args = ["prune", "--max-records", "1", "--database", db.url]
    dry = runner.invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert (
        "would remove 2 CDRs (timestart 2026-05-25 12:00:00 .. 2026-05-26 12:00:00)" in dry.stdout
    )
    assert len(callids(db)) == 3
    real = runner.invoke(app, args)
    assert real.exit_code == 0 and "removed 2 CDRs" in real.stdout
    assert callids(db) == ["2026-05-27.1"]


def test_prune_without_any_limit_is_a_usage_error(db):
    result = runner.invoke(app, ["prune", "--database", db.url], env={})
    assert result.exit_code == 2 and "no limit given" in result.stderr


def test_the_server_applies_the_limits_on_its_schedule(db, add_cdrs, make_client):
    add_cdrs(days_ago(3, 1), days_ago(2, 1), days_ago(1, 1))
    make_client(retention_max_records=1, retention_interval_seconds=3600)  # runs at start-up
    for _ in range(1500):  # a bounded wait for the background task (30 s), not a timing test
        if len(callids(db)) <= 1:
            break
        time.sleep(0.02)
    assert callids(db) == ["2026-05-27.1"]


def test_without_limits_the_schedule_ends_at_once_and_keeps_everything(db, add_cdrs, clock):
    add_cdrs(days_ago(3, 1), days_ago(2, 1))
    settings = Settings(database=db.url, retention_interval_seconds=1)
    # Checking the rows right after start-up would pass even if a pruner had yet to run; a
    # schedule that has ended (instead of sleeping until its next run) can never prune.
    asyncio.run(asyncio.wait_for(prune_forever(db, settings, clock), timeout=60))
    assert len(callids(db)) == 2


def test_age_is_measured_in_local_wall_clock_time(monkeypatch):
    # Central European summer time, as a POSIX rule (needs no zoneinfo files).
    monkeypatch.setenv("TZ", "CET-1CEST,M3.5.0,M10.5.0/3")
    time.tzset()
    try:
        utc_ten = ManualClock(start=float(parse_pbx_time("2026-05-28 10:00:00")))
        assert wall_clock_now(utc_ten) == parse_pbx_time("2026-05-28 12:00:00")
    finally:
        monkeypatch.undo()
        time.tzset()
