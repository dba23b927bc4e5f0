"""The app's shutdown leaves no database connection out: a background loop (the purge, the
retention schedule) stopped in the middle of a database call ends that call first."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from starlette.testclient import TestClient

from cdrgate.app import create_app
from cdrgate.services import retention_schedule
from cdrgate.services.auth import AuthService
from cdrgate.settings import Settings


@pytest.mark.parametrize("loop", ["purge", "retention"])
def test_a_background_call_running_at_shutdown_returns_its_connection_before_the_app_stops(
    db, clock, monkeypatch, loop
):
    started, release = threading.Event(), threading.Event()

    def slow_call(*_args: Any) -> None:
        with db.read():  # a pooled connection out, as the real call holds one
            started.set()
            release.wait(timeout=30)

    if loop == "purge":
        monkeypatch.setattr(AuthService, "purge_expired", slow_call)
        settings = Settings(database=db.url, access_log=False)
    else:
        monkeypatch.setattr(retention_schedule, "prune_alone", slow_call)
        settings = Settings(
            database=db.url, access_log=False, retention_max_records=10,
            retention_interval_seconds=3600,
        )  # fmt: skip
    client = TestClient(create_app(settings, database=db, clock=clock))
    client.__enter__()
    assert started.wait(timeout=30)
    # Let the call end only once the shutdown is under way: a shutdown that does not wait
    # for it returns with the connection still out (the database is disposed next).
    threading.Timer(0.5, release.set).start()
    client.__exit__(None, None, None)
    assert db.connections_in_use() == 0
