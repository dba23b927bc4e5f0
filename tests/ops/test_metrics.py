"""/metrics: the issue's metric names, closed label sets, permit rules and --metrics off."""

from __future__ import annotations

import os

import pytest

from cdrgate.storage import login_guard
from tests.conftest import Flow
from tests.ops.promtext import family_names, samples, value

ISSUE_METRICS = {
    # Counter families are named without _total by the parser.
    "cdrgate_http_requests",
    "cdrgate_http_request_duration_seconds",
    "cdrgate_api_errors",
    "cdrgate_logins",
    "cdrgate_downloads",
    "cdrgate_export_rows",
    "cdrgate_export_bytes",
    "cdrgate_ingested_cdrs",
    "cdrgate_exports_in_progress",
    "cdrgate_lockouts_active",
}


def scrape(client) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def test_metrics_lists_every_metric_the_issue_names(client):
    assert ISSUE_METRICS <= family_names(scrape(client))


def test_a_failed_login_counts_as_bad_credentials_and_as_an_api_error(client, flow):
    before = scrape(client)
    assert flow.login(password="0" * 32)["errno"] == "20003"
    after = scrape(client)
    for name, labels in [
        ("cdrgate_logins_total", {"outcome": "bad_credentials"}),
        ("cdrgate_api_errors_total", {"route": "login", "errno": "20003"}),
        ("cdrgate_http_requests_total", {"route": "login", "method": "POST", "status": "200"}),
    ]:
        assert value(after, name, **labels) == value(before, name, **labels) + 1, name


def test_an_envelope_is_counted_from_the_errno_it_carries_not_parsed_back(
    client, flow, monkeypatch
):
    # The answers of the protocol note their errno as they are sent; only another JSON answer
    # is read back for one (each flow paid a json.loads of its get_random answer).
    from cdrgate import httpmetrics

    def never(body):
        raise AssertionError(f"an envelope parsed back: {bytes(body)!r}")

    before = scrape(client)
    monkeypatch.setattr(httpmetrics, "_failed_errno", never)
    assert flow.get_random(flow.token())["status"] == "Success"
    assert flow.login(password="0" * 32)["errno"] == "20003"
    monkeypatch.undo()
    after = scrape(client)
    labels = {"route": "login", "errno": "20003"}
    counted = value(after, "cdrgate_api_errors_total", **labels)
    assert counted == value(before, "cdrgate_api_errors_total", **labels) + 1


def test_a_download_counts_its_outcome_rows_and_bytes(client, flow, add_cdrs):
    from tests.conftest import make_cdr

    add_cdrs(make_cdr(callid="1.1"), make_cdr(callid="1.2", timestart="2026-05-28 11:00:00"))
    before = scrape(client)
    response = flow.download(flow.token())
    assert response.status_code == 200
    after = scrape(client)
    ok = {"kind": "cdr", "outcome": "ok"}
    assert (
        value(after, "cdrgate_downloads_total", **ok)
        == value(before, "cdrgate_downloads_total", **ok) + 1
    )
    assert (
        value(after, "cdrgate_export_rows_total") - value(before, "cdrgate_export_rows_total") == 2
    )
    sent = value(after, "cdrgate_export_bytes_total") - value(before, "cdrgate_export_bytes_total")
    assert sent == len(response.content)
    assert value(after, "cdrgate_exports_in_progress") == 0


def test_raw_paths_never_become_label_values(client):
    client.post("/api/v1.1.0/cdr/../../etc/passwd-1003", json={})
    client.get("/no/such/thing/1003")
    text = scrape(client)
    label_values = {v for _name, labels in samples(text) for _k, v in labels}
    assert not [v for v in label_values if "passwd" in v or "1003" in v or "thing" in v]
    assert value(text, "cdrgate_http_requests_total", route="unknown", method="POST", status="200")
    assert value(text, "cdrgate_http_requests_total", route="other", method="GET", status="404")


def test_probes_and_scrapes_are_not_counted_as_api_traffic(client):
    client.get("/healthz")
    client.get("/readyz")
    client.get("/metrics")
    text = scrape(client)
    assert 'route="healthz"' not in text and 'route="metrics"' not in text
    assert "/healthz" not in text


def test_lockouts_active_counts_locked_client_ips_from_the_database(client, db, clock):
    now = int(clock() * 1000)
    with db.write() as conn:
        for ip in ("192.0.2.1", "192.0.2.2"):
            login_guard.record_failure(conn, ip, now, login_guard.account_key("api"))
            login_guard.lock(conn, ip, now + 60_000)
    assert value(scrape(client), "cdrgate_lockouts_active") == 2


def test_metrics_follow_the_permit_list(make_client, api_account):
    outsider = make_client(ip="198.51.100.7", permitted_networks=("127.0.0.0/8",))
    assert outsider.get("/metrics").json() == {"status": "Failed", "errno": "20015"}
    insider = make_client(ip="127.0.0.1", permitted_networks=("127.0.0.0/8",))
    assert insider.get("/metrics").status_code == 200


@pytest.mark.parametrize("path", ["/metrics"])
def test_metrics_off_serves_no_metrics(make_client, api_account, path):
    client = make_client(metrics=False)
    assert client.get(path).status_code == 404
    assert Flow(client).login()["status"] == "Success"


def test_a_dead_workers_in_progress_gauge_is_dropped_but_its_counters_stay(tmp_path):
    from cdrgate.metrics import mark_dead_workers

    dead = 2**31 - 2  # above any pid_max: no such process
    gauge = tmp_path / f"gauge_livesum_{dead}.db"
    counter = tmp_path / f"counter_{dead}.db"
    alive = tmp_path / f"gauge_livesum_{os.getpid()}.db"
    for path in (gauge, counter, alive):
        path.write_bytes(b"")
    mark_dead_workers(tmp_path)
    assert not gauge.exists()
    assert counter.exists() and alive.exists()
