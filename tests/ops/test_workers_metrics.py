"""/metrics under `serve --workers 2`: every worker's counts, whichever worker is scraped."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.ops.promtext import value
from tests.servers import PASSWORD_MD5, launch, prepare_database

pytestmark = pytest.mark.e2e
LOGINS = 12


def test_a_scrape_sums_all_workers_and_ignores_an_earlier_runs_samples(tmp_path):
    url = prepare_database(tmp_path)
    directory = tmp_path / "metrics"
    directory.mkdir()
    # What a previous run (or a crashed one) left behind must not count in this one.
    stale = directory / "counter_999999.db"
    stale.write_bytes(b"\0" * 16)
    env = {**os.environ, "CDRGATE_DATABASE": url, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    server = launch(("--workers", "2"), env, tmp_path / "serve.log", tmp_path)
    try:
        assert not stale.exists()
        for _ in range(LOGINS):  # a new connection each: the kernel spreads them over workers
            answer = httpx.post(
                f"{server.base_url}/api/v1.1.0/login",
                json={"username": "api", "password": PASSWORD_MD5},
                headers={"Connection": "close"},
            )
            assert answer.json()["status"] == "Success"
        scrapes = [httpx.get(f"{server.base_url}/metrics").text for _ in range(6)]
    finally:
        server.stop()
    for text in scrapes:
        assert value(text, "cdrgate_logins_total", outcome="ok") == LOGINS
        assert value(text, "cdrgate_exports_in_progress") == 0


def test_workers_without_a_configured_directory_get_a_fresh_one_removed_at_exit(tmp_path):
    url = prepare_database(tmp_path)
    env = {**os.environ, "CDRGATE_DATABASE": url, "TMPDIR": str(tmp_path)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    server = launch(("--workers", "2"), env, tmp_path / "serve.log", tmp_path)
    try:
        made = list(tmp_path.glob("cdrgate-metrics-*"))
        assert len(made) == 1
        assert "cdrgate_logins_total" in httpx.get(f"{server.base_url}/metrics").text
    finally:
        server.stop()
    assert server.process.returncode == 0
    assert not made[0].exists()


def test_a_configured_directory_that_does_not_exist_yet_is_made(tmp_path):
    # The unit names /run/cdrgate/metrics, inside a RuntimeDirectory systemd makes empty at
    # each start: serve died at import (FileNotFoundError from prometheus-client) and
    # Restart=on-failure looped.
    url = prepare_database(tmp_path)
    directory = tmp_path / "run" / "metrics"
    env = {**os.environ, "CDRGATE_DATABASE": url, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    server = launch((), env, tmp_path / "serve.log", tmp_path)
    try:
        httpx.post(
            f"{server.base_url}/api/v1.1.0/login",
            json={"username": "api", "password": PASSWORD_MD5},
        )
        text = httpx.get(f"{server.base_url}/metrics").text
    finally:
        server.stop()
    assert value(text, "cdrgate_logins_total", outcome="ok") == 1
    assert directory.is_dir()
