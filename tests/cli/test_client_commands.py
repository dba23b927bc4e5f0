"""`cdrgate download` and `cdrgate sync` against a real server on loopback."""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Iterator

import pytest
import trustme
from typer.testing import CliRunner

from cdrgate.app import create_app
from cdrgate.cdr import CSV_HEADER
from cdrgate.cli import app as cli_app
from cdrgate.settings import Settings
from tests.client.helpers import free_socket, live_server
from tests.conftest import API_PASSWORD, API_USER, make_cdr

runner = CliRunner()
RANGE = ["--start", "2026-05-27 00:00:00", "--end", "2026-05-29 23:59:59"]


@pytest.fixture
def pbx(db, clock, api_account, add_cdrs) -> Iterator[str]:
    add_cdrs(
        make_cdr(callid="a", timestart="2026-05-27 23:59:59"),
        make_cdr(callid="b", timestart="2026-05-28 00:00:00", callfrom="1001"),
    )
    app = create_app(
        Settings(database=db.url, access_log=False, lockout_failures=2), database=db, clock=clock
    )
    with live_server(app) as port:
        yield f"http://127.0.0.1:{port}"


def cdrgate(*args: str, password: str | None = API_PASSWORD, env: dict[str, str] | None = None):
    stdin = None if password is None else password + "\n"
    extra = ["--password-stdin"] if password is not None else []
    return runner.invoke(
        cli_app,
        [*args, "--username", API_USER, *extra],
        input=stdin,
        env=env,
    )


def one_error_line(result) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_download_writes_the_csv_file(pbx, flow, tmp_path):
    target = tmp_path / "cdr.csv"
    result = cdrgate("download", "--pbx", pbx, *RANGE, "--output", str(target))
    assert result.exit_code == 0, result.stderr
    expected = flow.download(flow.token(), "all", "2026-05-27 00:00:00", "2026-05-29 23:59:59")
    assert target.read_bytes() == expected.content
    assert "2 CDRs" in result.stderr


def test_download_jsonl_to_stdout_with_the_password_from_the_environment(pbx):
    result = cdrgate(
        "download", "--pbx", pbx, *RANGE, "--output", "-", "--format", "jsonl",
        "--extid", "1001", "--api-version", "v2.0.0",
        password=None, env={"CDRGATE_PBX_PASSWORD": API_PASSWORD},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    (line,) = result.stdout.splitlines()
    record = json.loads(line)
    assert (record["callid"], record["timestart"], record["pincode"]) == (
        "b", "2026-05-28T00:00:00", None,
    )  # fmt: skip


def test_an_empty_range_is_a_header_only_file(pbx):
    result = cdrgate(
        "download", "--pbx", pbx, "--start", "2020-01-01 00:00:00",
        "--end", "2020-01-01 23:59:59", "-o", "-",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stdout == CSV_HEADER


def test_a_missing_password_is_a_usage_error(pbx):
    result = cdrgate("download", "--pbx", pbx, *RANGE, "-o", "-", password=None, env={})
    assert "CDRGATE_PBX_PASSWORD" in one_error_line(result)
    assert result.exit_code == 2


def test_a_bad_time_is_one_clear_line(pbx):
    result = cdrgate("download", "--pbx", pbx, "--start", "yesterday", "--end", "now", "-o", "-")
    assert "--start" in one_error_line(result)


def test_a_wrong_password_is_one_line_and_a_lockout_says_when_to_retry(pbx, tmp_path):
    target = tmp_path / "cdr.csv"
    args = ("download", "--pbx", pbx, *RANGE, "-o", str(target))
    for _ in range(2):
        line = one_error_line(cdrgate(*args, password="wrong password"))
        assert "invalid username or password (errno 20003)" in line
    line = one_error_line(cdrgate(*args))
    assert "errno 20002" in line and "retry after" in line
    assert not target.exists()


def test_an_unreachable_pbx_is_one_line():
    sock = free_socket()
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        assert "cannot connect" in one_error_line(
            cdrgate("download", "--pbx", url, *RANGE, "-o", "-")
        )
    finally:
        sock.close()


def test_an_untrusted_certificate_is_one_line_and_a_ca_file_fixes_it(db, api_account, tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file, ca_file = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    app = create_app(Settings(database=db.url, access_log=False), database=db)
    with live_server(app, ssl_certfile=str(cert_file), ssl_keyfile=str(key_file)) as port:
        url = f"https://127.0.0.1:{port}"
        line = one_error_line(cdrgate("download", "--pbx", url, *RANGE, "-o", "-"))
        assert "certificate verify failed" in line
        trusted = cdrgate("download", "--pbx", url, *RANGE, "-o", "-", "--ca-file", str(ca_file))
        assert trusted.exit_code == 0, trusted.stderr


def test_sync_twice_adds_nothing_the_second_time(pbx, add_cdrs, tmp_path):
    mirror = f"sqlite:///{tmp_path / 'mirror.db'}"
    args = ("sync", "--pbx", pbx, "--into", mirror, "--until", "2026-05-29 23:59:59")

    first = cdrgate(*args, "--since", "2026-05-27 00:00:00")
    second = cdrgate(*args)
    add_cdrs(make_cdr(callid="c", timestart="2026-05-28 01:00:00"))
    third = cdrgate(*args)

    assert first.exit_code == 0, first.stderr
    assert "2 new" in first.stdout and "serial 369392534749" in first.stdout
    assert "0 new" in second.stdout
    assert "1 new" in third.stdout


def test_a_sync_from_cdrgate_follows_its_feed_and_says_so(pbx, add_cdrs, tmp_path):
    mirror = f"sqlite:///{tmp_path / 'mirror.db'}"
    first = cdrgate("sync", "--pbx", pbx, "--into", mirror, "--since", "2026-05-27 00:00:00")
    # A call stored now that started before everything the mirror holds.
    add_cdrs(make_cdr(callid="late", timestart="2026-05-27 00:30:00"))
    second = cdrgate("sync", "--pbx", pbx, "--into", mirror)
    assert first.exit_code == 0 and second.exit_code == 0, second.stderr
    assert "window" in first.stdout
    assert "change feed to seq" in second.stdout and "1 CDR read, 1 new" in second.stdout


def test_the_first_sync_without_since_is_one_clear_line(pbx, tmp_path):
    mirror = f"sqlite:///{tmp_path / 'mirror.db'}"
    assert "--since" in one_error_line(cdrgate("sync", "--pbx", pbx, "--into", mirror))


def test_an_output_file_in_a_missing_directory_is_one_line(pbx, tmp_path):
    target = tmp_path / "nonexistent" / "x.csv"
    line = one_error_line(cdrgate("download", "--pbx", pbx, *RANGE, "-o", str(target)))
    assert line == f"error: cannot write {target}: No such file or directory"


@pytest.mark.parametrize("path", ["/api/v1.1.0/", "/api/v1.1.0", "/api/v2.0.0/login"])
def test_a_pasted_api_url_is_understood_as_its_base_and_version(pbx, path):
    result = cdrgate("download", "--pbx", pbx + path, *RANGE, "-o", "-", "--format", "jsonl")
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2


def test_an_api_url_naming_another_version_than_the_option_says_give_the_base_url(pbx):
    args = ("download", "--pbx", pbx + "/api/v2.0.0/", "--api-version", "v1.1.0", *RANGE)
    line = one_error_line(cdrgate(*args, "-o", "-"))
    assert f"give the PBX base URL ({pbx})" in line


def test_an_api_url_of_an_unknown_version_is_explained(pbx):
    line = one_error_line(cdrgate("download", "--pbx", pbx + "/api/v3/", *RANGE, "-o", "-"))
    assert f"give the PBX base URL, e.g. {pbx}" in line


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://[::1", "Invalid IPv6 URL"),  # was an httpx InvalidURL traceback
        ("http://127.0.0.1:99999", "Port out of range 0-65535"),  # was "connection refused"
        ("http://pbx:abc", "Port could not be cast"),
        ("http://", "names no host"),
    ],
)
def test_a_malformed_pbx_url_is_a_usage_error_line(url, said):
    result = cdrgate("download", "--pbx", url, *RANGE, "-o", "-")
    assert result.exit_code == 2, result.output
    assert said in one_error_line(result)


@pytest.mark.parametrize("command", ["download", "sync", "download-recording"])
def test_a_ca_file_that_does_not_exist_is_a_usage_error(command, tmp_path):
    missing = tmp_path / "nope.pem"
    args = {
        "download": [*RANGE, "-o", "-"],
        "sync": ["--into", f"sqlite:///{tmp_path / 'm.db'}", "--since", "2026-05-01 00:00:00"],
        "download-recording": ["x.wav"],
    }[command]
    result = cdrgate(command, "--pbx", "https://pbx:8088", "--ca-file", str(missing), *args)
    assert result.exit_code == 2, result.output
    assert one_error_line(result) == f"error: --ca-file {missing}: no such file"


def test_one_sync_window_is_one_window(pbx, tmp_path):
    mirror = f"sqlite:///{tmp_path / 'mirror.db'}"
    result = cdrgate(
        "sync", "--pbx", pbx, "--into", mirror,
        "--since", "2026-05-28 00:00:00", "--until", "2026-05-28 12:00:00",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "1 window, 1 CDR read, 1 new" in result.stdout


def test_sync_summary_in_json(pbx, tmp_path):
    mirror = f"sqlite:///{tmp_path / 'mirror.db'}"
    result = cdrgate(
        "sync", "--pbx", pbx, "--into", mirror, "--json",
        "--since", "2026-05-28 00:00:00", "--until", "2026-05-28 12:00:00",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "pbx_url": pbx, "sn": "369392534749", "start": "2026-05-28 00:00:00",
        "end": "2026-05-28 12:00:00", "windows": 1, "rows": 1, "added": 1,
        "mode": "windows", "feed_seq": None,
    }  # fmt: skip


def test_http_against_an_https_server_suggests_https(db, api_account, tmp_path):
    cert = trustme.CA().issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    app = create_app(Settings(database=db.url, access_log=False), database=db)
    with live_server(app, ssl_certfile=str(cert_file), ssl_keyfile=str(key_file)) as port:
        url = f"http://127.0.0.1:{port}"
        line = one_error_line(cdrgate("download", "--pbx", url, *RANGE, "-o", "-"))
    assert f"try https://127.0.0.1:{port}" in line


def _drain_fifo(path, into: list[bytes]) -> threading.Thread:
    def read() -> None:
        with open(path, "rb") as fifo:
            into.append(fifo.read())

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def test_an_output_that_is_a_device_or_fifo_is_written_in_place_not_replaced(pbx, flow, tmp_path):
    # `--output /dev/null` once renamed a regular file over the device (as root, the whole
    # machine's /dev/null); a FIFO stands for any such file here.
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = _drain_fifo(fifo, received)
    result = cdrgate("download", "--pbx", pbx, *RANGE, "--output", str(fifo))
    reader.join(10)
    assert result.exit_code == 0, result.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    expected = flow.download(flow.token(), "all", "2026-05-27 00:00:00", "2026-05-29 23:59:59")
    assert received == [expected.content]
    assert not (tmp_path / "pipe.part").exists()
