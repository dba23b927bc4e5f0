"""Every download attempt is audited (when, account, client IP, filter, rows, bytes, outcome)
and `cdrgate audit` shows it."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cdrgate.cli import app as cli_app
from cdrgate.errors import Errno
from cdrgate.storage import audit
from tests.conftest import API_USER, make_cdr

START, END = "2026-05-01 00:00:00", "2026-05-31 23:59:59"


def _records(db):
    with db.read() as conn:
        return list(reversed(audit.query(conn, limit=1000)))


def _cdrs(add_cdrs, count=3):
    add_cdrs(
        *(make_cdr(callid=f"a.{i}", timestart=f"2026-05-0{i + 1} 10:00:00") for i in range(count))
    )


def test_a_successful_download_is_recorded_with_its_rows_and_bytes(flow, add_cdrs, db, clock):
    _cdrs(add_cdrs)
    response = flow.download(flow.token(), ext="1000,0215550100")
    assert response.status_code == 200
    [record] = _records(db)
    assert record.at_ms == int(clock() * 1000)
    assert (record.account, record.client_ip, record.api_version) == (
        API_USER,
        "127.0.0.1",
        "v1.1.0",
    )
    assert (record.selector, record.starttime, record.endtime) == ("1000,0215550100", START, END)
    assert (record.rows, record.bytes) == (3, len(response.content))
    assert (record.outcome, record.errno) == ("ok", None)


def test_refused_downloads_are_recorded_with_their_errno(flow, add_cdrs, db, make_client):
    _cdrs(add_cdrs, 1)
    token = flow.token()
    random = flow.get_random(token)["random"]
    link = flow.download_url(token, random, "all", START, END)
    flow.http.get(link)  # ok
    flow.http.get(link)  # replayed: 20020
    flow.http.get(flow.download_url("f" * 32, random, "all", START, END))  # unknown token
    other_ip = make_client(ip="192.0.2.9")
    other_ip.get(flow.download_url(token, flow.get_random(token)["random"], "all", START, END))
    records = _records(db)
    assert [(r.outcome, r.errno, r.account) for r in records] == [
        ("ok", None, API_USER),
        ("failed", Errno.CDR_RANDOM_INVALID.value, API_USER),
        ("failed", Errno.TOKEN_UNKNOWN.value, None),
        ("failed", Errno.ALLOWEDIP_ERROR.value, API_USER),
    ]
    assert records[-1].client_ip == "192.0.2.9"
    assert all(r.rows == 0 and r.bytes == 0 for r in records[1:])


def test_a_hostile_filter_is_recorded_clipped_and_the_secrets_are_not(flow, db):
    token = flow.token()
    flow.http.get(
        f"/api/v2.0.0/cdr/download?number={'9' * 5000}&starttime=x&endtime=y&token={token}&random=r"
    )
    [record] = _records(db)
    assert (record.outcome, record.errno) == ("failed", Errno.CDR_TIME_FORMAT.value)
    assert len(record.selector) <= 256
    assert token not in " ".join(str(value) for value in record)


def test_old_audit_records_are_purged_after_audit_days(flow, add_cdrs, db, clock, make_client):
    _cdrs(add_cdrs, 1)
    flow.download(flow.token())
    services = make_client(audit_days=30).app.state.services
    clock.advance(29 * 86400)
    assert services.downloads.audit.purge_old() == 0
    clock.advance(2 * 86400)
    assert services.downloads.audit.purge_old() == 1
    assert _records(db) == []


def test_cdrgate_audit_lists_attempts_newest_first(flow, add_cdrs, db):
    _cdrs(add_cdrs, 2)
    token = flow.token()
    flow.download(token)
    flow.http.get(flow.download_url(token, "0" * 32, "all", START, END))
    runner = CliRunner()
    shown = runner.invoke(cli_app, ["audit", "--database", db.url])
    assert shown.exit_code == 0, shown.output
    header, failed, ok = shown.output.splitlines()
    assert header.split("\t") == [
        "when", "account", "client_ip", "api", "filter", "rows", "bytes", "outcome",
    ]  # fmt: skip
    assert failed.split("\t")[1:] == [
        "api", "127.0.0.1", "v1.1.0", f"all {START}..{END}", "0", "0", "failed 20020",
    ]  # fmt: skip
    assert ok.split("\t")[5:] == ["2", ok.split("\t")[6], "ok"]

    as_json = runner.invoke(cli_app, ["audit", "--json", "--outcome", "ok", "--database", db.url])
    [record] = [json.loads(line) for line in as_json.output.splitlines()]
    assert record["rows"] == 2 and record["account"] == "api"


def test_cdrgate_audit_filters_by_time_and_refuses_bad_dates(flow, add_cdrs, db):
    _cdrs(add_cdrs, 1)
    flow.download(flow.token())  # ManualClock: 2026-05-28T20:26:40Z
    runner = CliRunner()
    later = runner.invoke(cli_app, ["audit", "--since", "2026-05-29", "--database", db.url])
    assert later.exit_code == 0 and later.output == ""
    earlier = runner.invoke(cli_app, ["audit", "--until", "2026-05-29", "--database", db.url])
    assert len(earlier.output.splitlines()) == 2
    bad = runner.invoke(cli_app, ["audit", "--since", "yesterday", "--database", db.url])
    assert bad.exit_code == 2
    assert "--since" in bad.output and "Traceback" not in bad.output
