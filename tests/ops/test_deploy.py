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
from tests.ops.nginx_example import DEPLOY, tools, write_site
from tests.ops.promtext import series_names

ROOT = Path(__file__).resolve().parents[2]
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


def test_the_nginx_example_logs_no_query_string():
    # Download links carry the token and the random; nginx's default "combined" access log
    # wrote both in clear, which cdrgate's own access log masks.
    conf = (DEPLOY / "nginx-cdrgate.conf").read_text()
    formats = dict(re.findall(r"log_format\s+(\w+)\s+((?:'[^']*'\s*)+);", conf))
    logs = re.findall(r"^\s*access_log\s+(\S+)\s+(\w+)\s*;", conf, re.MULTILINE)
    assert logs and all(name in formats for _, name in logs), logs
    for _, name in logs:
        assert not re.search(r"\$(request|request_uri|args|query_string|arg_\w+)\b", formats[name])


def test_nginx_accepts_the_example(tmp_path):
    nginx, _ = tools()
    write_site(tmp_path)
    # The example goes in conf.d/, which nginx includes inside its http block.
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        "events {}\n"
        f"http {{\n  access_log {tmp_path}/access.log;\n  include {tmp_path}/site.conf;\n}}\n"
    )
    done = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_operations_doc_names_every_route_label():
    # The recording endpoints were missing from the list of `route` values.
    from cdrgate.api.routes import ENDPOINTS

    text = (ROOT / "docs" / "operations.md").read_text()
    labels = text.split("`route` is the endpoint", 1)[1].split("\n\n", 1)[0]
    assert {f"`{name}`" for name in ENDPOINTS} <= set(re.findall(r"`[a-z/_]+`", labels))


def test_the_units_documentation_links_name_files_the_install_has():
    # It named /opt/cdrgate/share/doc/cdrgate/operations.md, which pip install does not make:
    # `systemctl status` showed a dead link.
    unit = (DEPLOY / "cdrgate.service").read_text()
    for url in re.findall(r"^Documentation=(.*)$", unit, re.MULTILINE):
        for link in url.split():
            if link.startswith("file:///opt/cdrgate/"):
                installed = Path(sys.prefix) / link.removeprefix("file:///opt/cdrgate/")
                assert installed.exists(), link
