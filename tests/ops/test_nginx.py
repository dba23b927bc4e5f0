"""deploy/nginx-cdrgate.conf run for real in front of a real ``cdrgate serve`` (where nginx
and openssl are installed): what a client gets through it is what it gets directly."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.ops.nginx_example import tools, write_site
from tests.servers import PASSWORD_MD5, launch, prepare_database
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

DAY = {"extid": "all", "starttime": "2026-05-02 00:00:00", "endtime": "2026-05-02 23:59:59"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def proxied(tmp_path) -> Iterator[tuple[str, int, object]]:
    """(database URL, nginx's TLS port, the cdrgate server) with the example in front."""
    nginx, _ = tools()
    url = prepare_database(tmp_path)
    env = {**os.environ, "CDRGATE_DATABASE": url}
    server = launch(("--trusted-proxy", "127.0.0.1"), env, tmp_path / "serve.log", tmp_path)
    port = free_port()
    write_site(tmp_path, listen=port, upstream=server.port)
    user = "user root;\n" if os.geteuid() == 0 else ""  # the workers read files in tmp_path
    (tmp_path / "nginx.conf").write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\n"
        f"error_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log {tmp_path}/access.log;\n"
        f"  client_body_temp_path {tmp_path}/body;\n  proxy_temp_path {tmp_path}/proxy;\n"
        f"  include {tmp_path}/site.conf;\n}}\n"
    )
    proxy = subprocess.Popen(
        [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proxy.poll() is None, (tmp_path / "error.log").read_text()
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        yield url, port, server
    finally:
        proxy.terminate()
        proxy.wait(timeout=30)
        server.stop()


def login_and_random(base: str, **headers: str) -> tuple[str, str]:
    with httpx.Client(base_url=base, verify=False, headers=headers) as http:
        token = http.post(
            "/api/v1.1.0/login", json={"username": "api", "password": PASSWORD_MD5}
        ).json()["token"]
        random = http.post(f"/api/v1.1.0/cdr/get_random?token={token}", json=DAY).json()
    return token, random["random"]


def download_http10(port: int, token: str, random: str) -> tuple[bytes, bytes]:
    """A download asked in HTTP/1.0, as PHP's file_get_contents does: (head, body)."""
    query = httpx.QueryParams({**DAY, "token": token, "random": random})
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port))) as sock:
        sock.sendall(f"GET /api/v1.1.0/cdr/download?{query} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


def test_an_http10_download_through_nginx_carries_its_content_length(proxied):
    # cdrgate gives an HTTP/1.0 client a Content-Length, so that a cut download is seen as
    # short. nginx asked cdrgate in HTTP/1.1 and passed the chunked body on to the HTTP/1.0
    # client delimited by the close alone: a cut download looked whole.
    _url, port, _server = proxied
    head, body = download_http10(port, *login_and_random(f"https://127.0.0.1:{port}"))
    assert head.startswith(b"HTTP/1.1 200"), head
    lengths = [
        line.split(b":", 1)[1].strip()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    ]
    assert lengths == [str(len(body)).encode()], head
    assert body.startswith(b"callid,timestart,")


def test_a_forged_x_forwarded_for_does_not_get_through(proxied):
    _url, port, server = proxied
    login_and_random(f"https://127.0.0.1:{port}", **{"X-Forwarded-For": "198.51.100.7"})

    def logged() -> list[str]:
        """The access lines of both requests (login, get_random)."""
        lines = server.output().splitlines()
        return [line for line in lines if "cdrgate.access" in line and "/api/v1.1.0/" in line]

    # An access line is written once the answer has gone: it may come after the client's read,
    # and the address must not be looked for in a log that does not hold the lines yet.
    wait_until(lambda: len(logged()) >= 2, lambda: str(logged()))
    assert any('127.0.0.1 "POST /api/v1.1.0/login"' in line for line in logged()), logged()
    assert "198.51.100.7" not in server.output()
