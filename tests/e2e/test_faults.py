"""``serve --faults FILE``: scripted failures on a real server, each logged as injected, and
refused where it could reach real clients by accident."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from cdrgate.cli import app
from cdrgate.client import CdrClient
from tests.servers import PASSWORD, PASSWORD_MD5, Server, launch, prepare_database

MAY = ("2026-05-01 00:00:00", "2026-05-31 23:59:59")


def serve_with(tmp_path: Path, faults: str) -> Server:
    rules = tmp_path / "faults.toml"
    rules.write_text(faults)
    env = {**os.environ, "CDRGATE_DATABASE": prepare_database(tmp_path)}
    return launch(("--faults", str(rules)), env, tmp_path / "serve.log", tmp_path)


@pytest.fixture
def server_factory(tmp_path):
    started: list[Server] = []

    def start(faults: str) -> Server:
        started.append(serve_with(tmp_path, faults))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def login(http: httpx.Client, password: str = PASSWORD_MD5) -> dict[str, Any]:
    body = {"username": "api", "password": password, "port": "8260"}
    return http.post("/api/v1.1.0/login", json=body).json()


def test_a_spent_random_on_the_next_download_is_retried_by_the_sdk(server_factory):
    server = server_factory('[[fault]]\nendpoint = "cdr/download"\nerrno = "20020"\ncount = 1\n')
    with CdrClient(server.base_url, "api", PASSWORD) as pbx:
        records = list(pbx.iter_window("all", *MAY))
    assert records  # the second random worked
    assert "fault 1 injected: cdr/download call 1 answered errno 20020" in server.output()


def test_errno_for_the_next_k_calls_then_normal_answers(server_factory):
    server = server_factory('[[fault]]\nendpoint = "login"\nerrno = "30003"\ncount = 2\n')
    with httpx.Client(base_url=server.base_url) as http:
        answers = [login(http) for _ in range(3)]
    assert [a["status"] for a in answers] == ["Failed", "Failed", "Success"]
    assert answers[0]["errno"] == "30003"
    assert server.output().count("answered errno 30003") == 2


def test_an_errno_answered_before_the_body_arrived_says_the_connection_closes(server_factory):
    # A fault answers without reading the body. When the client's body is slower than the
    # answer (its last packet late, the machine loaded), the connection ends after the answer:
    # a head that did not say so had httpx send its next login on a closed connection
    # ("Server disconnected without sending a response").
    server = server_factory('[[fault]]\nendpoint = "login"\nerrno = "30003"\ncount = 1\n')
    body = json.dumps({"username": "api", "password": PASSWORD_MD5}).encode()
    head = (
        b"POST /api/v1.1.0/login HTTP/1.1\r\nHost: pbx\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head)  # the body is not sent yet
        answer = b""
        while b"30003" not in answer:
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
        sock.sendall(body)
        assert sock.recv(65536) == b""  # then the close, as the head said
    assert b"connection: close" in answer.split(b"\r\n\r\n", 1)[0].lower().split(b"\r\n")
    # And a client on keep-alive goes on through new connections.
    with httpx.Client(base_url=server.base_url) as http:
        assert login(http)["status"] == "Success"


def test_a_cut_download_is_a_broken_transfer_not_a_short_file(server_factory):
    server = server_factory('[[fault]]\nendpoint = "cdr/download"\ncut_after_bytes = 500\n')
    with httpx.Client(base_url=server.base_url) as http:
        token = login(http)["token"]
        body = {"extid": "all", "starttime": MAY[0], "endtime": MAY[1]}
        random = http.post("/api/v1.1.0/cdr/get_random", params={"token": token}, json=body).json()[
            "random"
        ]
        params = {**body, "token": token, "random": random}
        with pytest.raises(httpx.RemoteProtocolError):
            with http.stream("GET", "/api/v1.1.0/cdr/download", params=params) as response:
                received = b"".join(response.iter_raw())
                pytest.fail(f"complete body of {len(received)} bytes")
    assert "cut after 500 bytes" in server.output()


def test_delays_are_logged_and_settings_tighten_the_lockout(server_factory):
    server = server_factory(
        "[settings]\nlockout_failures = 2\n\n"
        '[[fault]]\nendpoint = "login"\ndelay_seconds = 0.1\nskip = 2\ncount = 1\n'
    )
    with httpx.Client(base_url=server.base_url) as http:
        errnos = [login(http, "0" * 32).get("errno") for _ in range(3)]
    assert errnos == ["20003", "20003", "20002"]  # locked after two failures, not five
    assert "fault 1 injected: login call 3 delayed 0.1 s" in server.output()


runner = CliRunner()


def serve_cli(tmp_path: Path, faults: str, *args: str):
    rules = tmp_path / "faults.toml"
    rules.write_text(faults)
    database = f"sqlite:///{tmp_path / 'x.db'}"
    result = runner.invoke(app, ["serve", "--faults", str(rules), "--database", database, *args])
    assert "Traceback" not in result.output
    return result


GOOD = '[[fault]]\nendpoint = "login"\nerrno = "20003"\n'


def test_faults_on_a_non_loopback_address_need_i_know(tmp_path):
    result = serve_cli(tmp_path, GOOD, "--host", "0.0.0.0")
    assert result.exit_code == 2
    assert "refused on --host 0.0.0.0 (not loopback) unless --i-know" in result.stderr
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize(
    ("faults", "said"),
    [
        ('[[fault]]\nendpoint = "login"\nerrno = "20099"\n', "fault 1: '20099' is not a valid"),
        ('[[fault]]\nendpoint = "cdr/downlaod"\nerrno = "20020"\n', "endpoint must be one of"),
        ('[[fault]]\nendpoint = "login"\nerno = "20020"\n', "unknown key 'erno'"),
        ('[[fault]]\nendpoint = "login"\n', "give exactly one of errno"),
        ('[[fault]]\nendpoint = "login"\ncut_after_bytes = 5\n', "only applies to cdr/download"),
        ("[[fault]\n", "not TOML"),
        ("[settings]\nlockout_failures = 0\n[[fault]]\nendpoint='login'\nerrno='20003'\n",
         "[settings] takes positive integers"),
    ],
)  # fmt: skip
def test_a_bad_fault_file_is_one_clear_line(tmp_path, faults, said):
    result = serve_cli(tmp_path, faults)
    assert result.exit_code == 2, result.output
    assert said in result.stderr


def test_every_recipe_in_the_docs_is_a_valid_fault_file(tmp_path):
    import re

    from cdrgate.faults import load

    doc = Path(__file__).resolve().parents[2] / "docs" / "faults.md"
    recipes = re.findall(r"```toml\n(.*?)```", doc.read_text(), re.S)
    assert len(recipes) >= 5
    for number, recipe in enumerate(recipes):
        path = tmp_path / f"recipe-{number}.toml"
        path.write_text(recipe)
        assert load(path).faults
