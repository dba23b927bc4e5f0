"""HTTPS: a real `cdrgate serve` on loopback, reached the way Yeastar clients reach a PBX."""

from __future__ import annotations

import socket
import ssl
import stat
import subprocess

import httpx
import pytest
import trustme

from cdrgate import tls
from cdrgate.errors import UsageError
from cdrgate.settings import Settings
from tests.conftest import Flow
from tests.servers import CLI, PASSWORD_MD5, Server, ServerFactory, StartServer


@pytest.fixture(scope="module")
def https_server(module_server_factory: ServerFactory) -> Server:
    return module_server_factory("--self-signed", scheme="https")


def _download_all(http: httpx.Client) -> httpx.Response:
    flow = Flow(http)
    token = flow.login(password=PASSWORD_MD5)["token"]
    return flow.download(token)


def test_self_signed_server_works_for_clients_that_skip_verification(https_server: Server):
    server = https_server
    # What every Yeastar integration does: https://host:port with verify=False.
    with httpx.Client(base_url=server.base_url, verify=False, timeout=30) as http:
        response = _download_all(http)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.text.startswith("callid,timestart,")
    assert "Uvicorn running on https://127.0.0.1:" in server.output()


def test_the_generated_certificate_verifies_as_its_own_ca(https_server: Server):
    server = https_server
    pinned = ssl.create_default_context(cafile=str(server.directory / tls.CERT_NAME))
    for base in (server.base_url, f"https://localhost:{server.port}"):
        answer = httpx.get(base + "/", verify=pinned, timeout=10)
        assert answer.json()["service"] == "cdrgate"


def test_a_client_that_verifies_against_system_roots_is_refused(https_server: Server):
    server = https_server
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(server.base_url + "/", verify=ssl.create_default_context(), timeout=10)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
@pytest.mark.parametrize(
    ("version", "ciphers"),
    [
        (ssl.TLSVersion.TLSv1, "ALL"),
        (ssl.TLSVersion.TLSv1_1, "ALL"),
        (ssl.TLSVersion.TLSv1_2, "AES128-SHA:DES-CBC3-SHA:ECDHE-RSA-AES128-SHA"),
        (ssl.TLSVersion.TLSv1_2, "eNULL:aNULL"),
    ],
)
def test_old_protocols_and_weak_ciphers_are_refused(
    https_server: Server, version: ssl.TLSVersion, ciphers: str
):
    # A client willing to use only them (security level 0 lets this OpenSSL offer them).
    weak = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    weak.check_hostname, weak.verify_mode = False, ssl.CERT_NONE
    weak.set_ciphers(f"{ciphers}:@SECLEVEL=0")
    weak.minimum_version = weak.maximum_version = version
    with socket.create_connection(("127.0.0.1", https_server.port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError):
            weak.wrap_socket(raw).close()


def test_the_server_announces_the_fingerprint_of_the_certificate_in_its_data_directory(
    https_server: Server,
):
    cert = https_server.directory / tls.CERT_NAME
    assert tls.fingerprint(cert) in https_server.output()
    key = https_server.directory / tls.KEY_NAME
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_the_self_signed_certificate_is_created_once_and_reused(tmp_path):
    first = tls.ensure_self_signed(tmp_path, ("pbx.example",))
    created = first.cert.read_bytes(), first.key.read_bytes()
    again = tls.ensure_self_signed(tmp_path, ("pbx.example",))
    assert (again.cert.read_bytes(), again.key.read_bytes()) == created


def test_a_given_certificate_and_key_are_served(start_server: StartServer, tmp_path):
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    server = start_server("--tls-cert", str(cert), "--tls-key", str(key), scheme="https")
    trusted = ssl.create_default_context()
    ca.configure_trust(trusted)
    with httpx.Client(base_url=server.base_url, verify=trusted, timeout=30) as http:
        assert _download_all(http).status_code == 200


@pytest.mark.parametrize(("mode", "warned"), [(0o644, True), (0o640, False), (0o600, False)])
def test_a_key_every_local_user_may_read_is_warned_about(
    start_server: StartServer, tmp_path, mode: int, warned: bool
):
    issued = trustme.CA().issue_cert("127.0.0.1")
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    key.chmod(mode)
    server = start_server("--tls-cert", str(cert), "--tls-key", str(key), scheme="https")
    warning = f"warning: TLS key {key} is readable by every local user: chmod o-r it"
    assert (warning in server.output()) is warned


def test_a_missing_certificate_file_is_a_one_line_usage_error(tmp_path):
    done = subprocess.run(
        [*CLI, "serve", "--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", "x.key",
         "--database", f"sqlite:///{tmp_path / 'db.sqlite'}", "--port", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "TLS file not found" in done.stderr
    assert "Traceback" not in done.stderr


def test_self_signed_and_a_given_certificate_cannot_be_combined():
    with pytest.raises(UsageError, match="either"):
        tls.server_files(Settings(self_signed=True, tls_cert="a.pem", tls_key="a.key"))


def test_a_corrupt_or_mismatched_certificate_is_replaced(tmp_path):
    first = tls.ensure_self_signed(tmp_path)
    other = tls.ensure_self_signed(tmp_path / "other")
    first.key.write_bytes(other.key.read_bytes())  # key no longer matches the certificate
    renewed = tls.ensure_self_signed(tmp_path)
    assert tls.fingerprint(renewed.cert) != tls.fingerprint(other.cert)
    assert tls._reusable(renewed)
    renewed.cert.write_text("not a certificate")
    assert tls._reusable(tls.ensure_self_signed(tmp_path))


def test_plain_http_and_loopback_are_the_defaults():
    settings = Settings.from_env({})
    assert settings.host == "127.0.0.1"
    assert tls.server_files(settings) is None
