"""Proxies from the environment, as httpx and curl take them, and the deadline through them.

A real forward proxy on loopback (tests/client/forward_proxy.py) in front of the real app.
"""

from __future__ import annotations

import io
import ipaddress
import ssl
import sys
from urllib.parse import urlsplit

import pytest
import trustme
from typer.testing import CliRunner

from cdrgate.cli import app as cli_app
from cdrgate.client import CdrClient, ClientError, ConnectError, TlsError
from cdrgate.client._proxies import direct_networks, environment_proxies
from tests.client.fake_pbx import Answer, FakePbx, http
from tests.client.forward_proxy import ForwardProxy, SocksProxy
from tests.client.helpers import free_socket
from tests.conftest import API_PASSWORD, API_USER

DAYS = ("2026-05-27 00:00:00", "2026-05-29 23:59:59")
runner = CliRunner()


def callids(url: str, **kwargs) -> list[str]:
    with CdrClient(url, API_USER, API_PASSWORD, **kwargs) as client:
        out = io.BytesIO()
        client.download("all", *DAYS, out)
    return [line.split(",")[0] for line in out.getvalue().decode().splitlines()[1:]]


def test_http_proxy_carries_every_request_of_a_download(http_server, monkeypatch):
    proxy = ForwardProxy()
    with proxy.running() as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        assert callids(http_server) == ["a", "b", "c"]
    paths = [urlsplit(line.split(" ")[1]).path.rsplit("/", 1)[-1] for line in proxy.seen]
    assert proxy.seen[0].startswith(f"POST {http_server}/api/v1.1.0/login")
    assert {"login", "get_random", "download", "logout"} <= set(paths)


def _seen_by_proxy(http_server: str, monkeypatch: pytest.MonkeyPatch, no_proxy: str) -> list[str]:
    """What the proxy saw of a download with ``no_proxy`` as NO_PROXY."""
    proxy = ForwardProxy()
    with proxy.running() as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        monkeypatch.setenv("NO_PROXY", no_proxy)
        assert callids(http_server) == ["a", "b", "c"]
    return proxy.seen


@pytest.mark.parametrize(
    "no_proxy",
    [
        "127.0.0.1", "*", "example.org, 127.0.0.1",
        # Ranges, as curl and requests read them (httpx alone would take 127.0.0.0 only).
        "127.0.0.0/8", "10.0.0.0/8, 127.0.0.1/32", "[::1]/128,127.0.0.0/16",
    ],
)  # fmt: skip
def test_no_proxy_naming_the_host_goes_direct(http_server, monkeypatch, no_proxy):
    assert _seen_by_proxy(http_server, monkeypatch, no_proxy) == []


@pytest.mark.parametrize("no_proxy", ["10.0.0.0/8", "127.0.0.0/32", "::/0", "localhost"])
def test_no_proxy_naming_neither_the_host_nor_a_range_holding_it_goes_through_the_proxy(
    http_server, monkeypatch, no_proxy
):
    seen = _seen_by_proxy(http_server, monkeypatch, no_proxy)
    assert seen and seen[0].startswith(f"POST {http_server}/api/v1.1.0/login")


def test_a_no_proxy_entry_with_a_slash_that_is_no_range_is_one_error(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "pbx.example, 127.0.0.1.example/8")
    with pytest.raises(ClientError, match=r"cannot read NO_PROXY .*not an address range"):
        CdrClient("http://127.0.0.1:9", "api", "x")


def test_https_proxy_tunnels_tls_to_the_pbx(tls_server, ca, tmp_path, monkeypatch):
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    proxy = ForwardProxy()
    with proxy.running() as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # for http:// only: unused
        monkeypatch.setenv("HTTPS_PROXY", proxy_url)
        assert callids(tls_server, verify=ca_file) == ["a", "b", "c"]
    assert proxy.seen and set(proxy.seen) == {f"CONNECT {urlsplit(tls_server).netloc}"}


def _tls_context(ca: trustme.CA) -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1 from ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


def test_an_https_proxy_whose_certificate_fails_is_named_not_the_pbx(
    tls_server, ca, tmp_path, monkeypatch
):
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    proxy = ForwardProxy()
    with proxy.running(tls=_tls_context(trustme.CA())) as proxy_url:  # a CA no one trusts
        monkeypatch.setenv("HTTPS_PROXY", proxy_url)
        with pytest.raises(TlsError) as failed:
            callids(tls_server, verify=ca_file)
    assert str(failed.value).startswith(
        f"TLS with the proxy {proxy_url} (on the way to {tls_server}) failed: "
        "certificate verify failed"
    )
    assert proxy.seen == []  # no CONNECT: the handshake with the proxy failed


def test_through_a_trusted_https_proxy_the_pbx_certificate_is_still_the_pbx_s_to_prove(
    tls_server, ca, tmp_path, monkeypatch
):
    proxy_ca, pbx_ca = trustme.CA(), tmp_path / "pbx-ca.pem"
    ca.cert_pem.write_to_path(str(pbx_ca))
    proxy_ca.cert_pem.write_to_path(str(tmp_path / "proxy-ca.pem"))
    # The proxy's own certificate is checked against the system's CAs, which SSL_CERT_FILE names.
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "proxy-ca.pem"))
    proxy = ForwardProxy()
    with proxy.running(tls=_tls_context(proxy_ca)) as proxy_url:
        monkeypatch.setenv("HTTPS_PROXY", proxy_url)
        assert callids(tls_server, verify=pbx_ca) == ["a", "b", "c"]  # TLS inside TLS
        with pytest.raises(TlsError) as failed:
            callids(tls_server)  # the PBX's CA not given
    assert str(failed.value).startswith(f"TLS with {tls_server} failed: certificate verify failed")
    assert set(proxy.seen) == {f"CONNECT {urlsplit(tls_server).netloc}"}


def test_the_cli_goes_through_the_proxy(http_server, monkeypatch, tmp_path):
    proxy = ForwardProxy()
    with proxy.running() as proxy_url:
        monkeypatch.setenv("ALL_PROXY", proxy_url)
        result = runner.invoke(
            cli_app,
            ["download", "--pbx", http_server, "--username", API_USER,
             "--start", DAYS[0], "--end", DAYS[1], "-o", str(tmp_path / "out.csv")],
            env={"CDRGATE_PBX_PASSWORD": API_PASSWORD},
        )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert len((tmp_path / "out.csv").read_text().splitlines()) == 4
    assert proxy.seen


def test_the_deadline_holds_through_a_proxy_that_trickles(monkeypatch, tmp_path):
    # The fake PBX answers at once; the proxy relays a byte every 50 ms: a login answer takes
    # seconds, far inside the 1 s read timeout, so only the deadline ends it.
    with FakePbx({}).running() as url, ForwardProxy(trickle=0.05).running() as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        with CdrClient(url, "api", "secret", timeout=1, deadline=1) as client:
            with pytest.raises(ConnectError, match="took longer than the 1 s deadline"):
                client.download("all", *DAYS, tmp_path / "out.csv")
    assert sorted(tmp_path.iterdir()) == []


def test_a_proxy_that_is_down_is_named_in_the_error(http_server, monkeypatch):
    sock = free_socket()  # bound but never listening: connections are refused
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://user:secret@127.0.0.1:{sock.getsockname()[1]}")
        with CdrClient(http_server, API_USER, API_PASSWORD) as client:
            with pytest.raises(ConnectError, match="cannot connect to the proxy") as caught:
                client.login()
    finally:
        sock.close()
    assert "user:***@127.0.0.1" in str(caught.value) and "secret" not in str(caught.value)


def test_a_proxy_refusing_the_tunnel_is_said_to_be_the_proxy(tls_server, monkeypatch):
    refusing = Answer(http(b"no", "403 Forbidden", "text/plain"), "close")
    with FakePbx({urlsplit(tls_server).netloc: refusing}).running() as proxy_url:
        monkeypatch.setenv("HTTPS_PROXY", proxy_url)
        with CdrClient(tls_server, API_USER, API_PASSWORD, verify=False) as client:
            with pytest.raises(ConnectError, match=r"the proxy did not reach .*403"):
                client.login()


UNUSABLE = {
    "socks:// (no such scheme)": ("ALL_PROXY", "socks://127.0.0.1:1080", "socks5://"),
    "ftp://": ("HTTPS_PROXY", "ftp://127.0.0.1:21", "socks5h://"),
}


@pytest.mark.parametrize("variable, url, said", UNUSABLE.values(), ids=UNUSABLE.keys())
def test_an_unusable_proxy_is_one_error_line(variable, url, said, monkeypatch):
    monkeypatch.setenv(variable, url)
    result = runner.invoke(
        cli_app,
        ["download", "--pbx", "http://127.0.0.1:9", "--username", "api",
         "--start", DAYS[0], "--end", DAYS[1], "-o", "-"],
        env={"CDRGATE_PBX_PASSWORD": "x"},
    )  # fmt: skip
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot use {variable}"), result.stderr
    assert said in lines[0] and "Traceback" not in result.output


def test_a_socks5_proxy_carries_every_request_of_a_download(http_server, monkeypatch):
    proxy = SocksProxy()
    with proxy.running() as proxy_url:
        monkeypatch.setenv("ALL_PROXY", proxy_url)
        assert callids(http_server) == ["a", "b", "c"]
    port = urlsplit(http_server).port
    # One connection a request or a kept-alive one: every one asked for the PBX, by address.
    assert proxy.seen and set(proxy.seen) == {("127.0.0.1", port)}


def test_a_socks5h_proxy_resolves_the_pbx_name_and_tls_is_checked_against_the_pbx(
    tls_server, ca, tmp_path, monkeypatch
):
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    by_name = tls_server.replace("127.0.0.1", "localhost")
    proxy = SocksProxy()
    with proxy.running("socks5h") as proxy_url:
        monkeypatch.setenv("HTTPS_PROXY", proxy_url)
        assert callids(by_name, verify=ca_file) == ["a", "b", "c"]
        # The tunnel is the proxy's; the certificate is still the PBX's to prove.
        with pytest.raises(ConnectError, match="certificate"):
            callids(by_name)
    assert proxy.seen and set(proxy.seen) == {("localhost", urlsplit(tls_server).port)}


def test_a_socks_proxy_without_socksio_is_one_error_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "socksio", None)  # as if not installed: import fails
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:1080")
    with pytest.raises(ClientError, match=r"ALL_PROXY names a SOCKS proxy .*pip install socksio"):
        CdrClient("http://127.0.0.1:9", "api", "x")


def _env(monkeypatch, **values: str) -> dict[str, str | None]:
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return environment_proxies()


def test_the_environment_is_read_as_httpx_documents_it(monkeypatch):
    assert environment_proxies() == {}
    assert _env(monkeypatch, HTTP_PROXY="proxy.corp:3128") == {"http://": "http://proxy.corp:3128"}
    # The lower-case spelling wins, as in curl and the standard library.
    assert _env(monkeypatch, http_proxy="http://lower:1") == {"http://": "http://lower:1"}
    proxies = _env(
        monkeypatch,
        HTTPS_PROXY="http://tls:3128",
        ALL_PROXY="socks5://all:1080",
        NO_PROXY="corp.example, .sub.example,10.1.2.3,192.168.0.0/16,::1,localhost,http://x:8,"
        "[fd00::]/8",
    )
    assert proxies == {
        "http://": "http://lower:1",
        "https://": "http://tls:3128",
        "all://": "socks5://all:1080",
        "all://*corp.example": None,
        "all://*.sub.example": None,
        "all://10.1.2.3": None,
        "all://[::1]": None,
        "all://localhost": None,
        "http://x:8": None,
    }
    # Ranges go direct through each proxy's transport, not as httpx patterns.
    assert direct_networks() == (
        ipaddress.ip_network("192.168.0.0/16"),
        ipaddress.ip_network("fd00::/8"),
    )
    assert _env(monkeypatch, no_proxy="example.org,*") == {}
