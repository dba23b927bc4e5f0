"""The permitted-networks allow-list (the device's "permitted IP" setting)."""

from __future__ import annotations

import os
import subprocess

import pytest

from cdrgate.app import create_app
from cdrgate.errors import Errno, UsageError
from cdrgate.settings import Settings
from tests.conftest import API_MD5, API_USER, Flow
from tests.servers import CLI

REFUSED = {"status": "Failed", "errno": Errno.ALLOWEDIP_ERROR.value}


def test_without_a_list_every_client_is_served(make_client, api_account):
    assert Flow(make_client(ip="203.0.113.7")).login()["status"] == "Success"


def test_clients_outside_the_permitted_networks_are_refused_before_anything_else(
    make_client, api_account
):
    outsider = make_client(ip="203.0.113.7", permitted_networks=("10.0.0.0/8", "192.0.2.1"))
    assert Flow(outsider).login() == REFUSED
    assert outsider.get("/").json() == REFUSED
    assert outsider.get("/api/v1.1.0/cdr/download?token=x&random=y").json() == REFUSED


def test_clients_inside_a_permitted_network_or_address_are_served(make_client, api_account):
    permitted = ("10.0.0.0/8", "192.0.2.1", "::1")
    for ip in ("10.200.1.2", "192.0.2.1", "::1"):
        assert Flow(make_client(ip=ip, permitted_networks=permitted)).login()["status"] == (
            "Success"
        ), ip
    assert Flow(make_client(ip="192.0.2.2", permitted_networks=permitted)).login() == REFUSED


def test_refused_wrong_passwords_do_not_count_towards_a_lockout(make_client, api_account):
    outsider = Flow(make_client(ip="203.0.113.7", permitted_networks=("10.0.0.0/8",)))
    for _ in range(10):
        assert outsider.login(password="0" * 32) == REFUSED
    assert Flow(make_client(ip="203.0.113.7")).login()["status"] == "Success"


def test_behind_a_trusted_proxy_the_forwarded_client_is_checked(make_client, api_account):
    proxied = make_client(
        ip="127.0.0.1", trusted_proxies=("127.0.0.1",), permitted_networks=("10.0.0.0/8",)
    )
    body = {"username": API_USER, "password": API_MD5}
    inside = proxied.post("/api/v1.1.0/login", json=body, headers={"X-Forwarded-For": "10.1.1.1"})
    outside = proxied.post("/api/v1.1.0/login", json=body, headers={"X-Forwarded-For": "8.8.8.8"})
    assert inside.json()["status"] == "Success"
    assert outside.json() == REFUSED


@pytest.mark.parametrize(
    ("inside", "outside"),
    [
        ("10.1.1.1:51234", "8.8.8.8:443"),
        ("[::ffff:10.1.1.1]:51234", "[2001:4860::8888]:443"),
        # Bracketed without a port, as RFC 7239 writes a v6 node (for="[2001:db8::1]").
        ("[::ffff:10.1.1.1]", "[2001:4860::8888]"),
    ],
)
def test_a_forwarded_hop_with_its_port_is_the_client(make_client, api_account, inside, outside):
    # Some cloud load balancers send the client's port in X-Forwarded-For. Read as no
    # address, it made every client behind the proxy the proxy itself (here: all refused).
    proxied = make_client(
        ip="127.0.0.1", trusted_proxies=("127.0.0.1",), permitted_networks=("10.0.0.0/8",)
    )
    body = {"username": API_USER, "password": API_MD5}
    answers = [
        proxied.post("/api/v1.1.0/login", json=body, headers={"X-Forwarded-For": hop}).json()
        for hop in (inside, outside)
    ]
    assert answers[0]["status"] == "Success"
    assert answers[1] == REFUSED


def test_a_client_s_own_forwarded_for_line_before_the_proxy_s_is_not_believed(
    make_client, api_account
):
    # HAProxy's "option forwardfor" adds its own X-Forwarded-For line after any the client
    # sent; the lines are one list in order (RFC 9110), read from the nearest hop.
    proxied = make_client(
        ip="127.0.0.1", trusted_proxies=("127.0.0.1",), permitted_networks=("10.0.0.0/8",)
    )
    body = {"username": API_USER, "password": API_MD5}
    spoofed = [("X-Forwarded-For", "10.1.1.1"), ("X-Forwarded-For", "8.8.8.8")]
    honest = [("X-Forwarded-For", "8.8.8.8"), ("X-Forwarded-For", "10.1.1.1")]
    assert proxied.post("/api/v1.1.0/login", json=body, headers=spoofed).json() == REFUSED
    assert proxied.post("/api/v1.1.0/login", json=body, headers=honest).json()["status"] == (
        "Success"
    )


def test_a_bad_network_is_a_usage_error(db):
    with pytest.raises(UsageError, match="not an IP address or network"):
        create_app(Settings(database=db.url, permitted_networks=("10.0.0.300/8",)), database=db)


def test_serve_refuses_a_bad_permit_option_in_one_line(tmp_path):
    done = subprocess.run(
        [*CLI, "serve", "--permit", "office", "--database", f"sqlite:///{tmp_path / 'x.db'}",
         "--port", "1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "not an IP address or network" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("source", "named"),
    [
        ({"CDRGATE_TRUSTED_PROXIES": "proxy.example"}, "CDRGATE_TRUSTED_PROXIES"),
        ({"CDRGATE_PERMITTED_NETWORKS": "10.0.0.0/33"}, "CDRGATE_PERMITTED_NETWORKS"),
        ("trusted_proxies = ['proxy.example']\n", "trusted_proxies in "),
    ],
)
def test_a_bad_network_from_the_environment_or_a_file_is_named_as_written(tmp_path, source, named):
    """The one error line names what the user wrote: a variable or a config file's key, not a
    flag they never gave."""
    env = {**os.environ, "CDRGATE_DATABASE": f"sqlite:///{tmp_path / 'x.db'}"}
    extra = []
    if isinstance(source, dict):
        env.update(source)
    else:
        (tmp_path / "cdrgate.toml").write_text(source)
        extra = ["--config", str(tmp_path / "cdrgate.toml")]
    done = subprocess.run(
        [*CLI, "serve", "--port", "1", *extra], capture_output=True, text=True, env=env,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {named}"), done.stderr
    assert "Traceback" not in done.stderr
