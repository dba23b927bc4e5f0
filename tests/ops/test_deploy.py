"""deploy/ and docs/operations.md: the unit verifies, the examples agree with the code, and
the dashboard and alerts use only metrics that exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cdrgate.config import read_config
from tests.ops.promtext import series_names

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
METRIC = re.compile(r"\bcdrgate_[a-z_]+\b")


def exported_sample_names(client) -> set[str]:
    return series_names(client.get("/metrics").text)


def used_metrics(text: str) -> set[str]:
    return set(METRIC.findall(text))


def test_the_dashboard_uses_only_metrics_that_exist(client):
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = set().union(*(used_metrics(expr) for expr in exprs))
    assert len(used) >= 8
    assert used <= exported_sample_names(client)


def test_operations_doc_lists_every_metric_and_its_alerts_use_only_real_ones(client):
    text = (ROOT / "docs" / "operations.md").read_text()
    exported = exported_sample_names(client)
    families = {re.sub(r"_(bucket|sum|count)$", "", name) for name in exported}
    assert families <= used_metrics(text), "document every metric in docs/operations.md"
    alerts = text.split("```yaml", 1)[1].split("```", 1)[0]
    assert alerts.count("- alert:") == 3
    assert used_metrics(alerts) <= exported


def test_the_example_config_file_is_valid():
    values = read_config(DEPLOY / "cdrgate.toml")
    assert values["trusted_proxies"] == ("127.0.0.1",)


def test_the_nginx_example_replaces_x_forwarded_for_and_targets_the_configured_port():
    conf = (DEPLOY / "nginx-cdrgate.conf").read_text()
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in conf
    assert "$proxy_add_x_forwarded_for" not in conf  # appending would pass a client's lie on
    port = read_config(DEPLOY / "cdrgate.toml")["port"]
    assert f"server 127.0.0.1:{port};" in conf


def test_the_systemd_unit_is_hardened():
    unit = (DEPLOY / "cdrgate.service").read_text()
    for line in (
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "StateDirectory=cdrgate",
        "KillSignal=SIGTERM",
    ):
        assert line in unit
    timeout = re.search(r"TimeoutStopSec=(\d+)", unit)
    assert timeout is not None
    stop = int(timeout.group(1))
    assert stop > read_config(DEPLOY / "cdrgate.toml")["drain_seconds"]


def test_systemd_analyze_verifies_the_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    # The unit names the installed path; verify checks that the program exists.
    cdrgate = Path(sys.executable).with_name("cdrgate")
    unit = (
        (DEPLOY / "cdrgate.service").read_text().replace("/opt/cdrgate/bin/cdrgate", str(cdrgate))
    )
    (tmp_path / "cdrgate.service").write_text(unit)
    done = subprocess.run(
        [analyze, "verify", str(tmp_path / "cdrgate.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "cdrgate.service" not in done.stderr, done.stderr  # no warning about our unit
