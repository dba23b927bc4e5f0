"""deploy/nginx-cdrgate.conf made runnable in a test folder: a throwaway certificate in
place of the example's, its logs in the folder, and optionally its ports moved."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def tools() -> tuple[str, str]:
    """nginx and openssl, or the test skipped where either is missing."""
    nginx, openssl = shutil.which("nginx"), shutil.which("openssl")
    if nginx is None or openssl is None:
        pytest.skip("nginx or openssl is not installed here")
    return nginx, openssl


def write_site(folder: Path, listen: int | None = None, upstream: int | None = None) -> Path:
    """The example as ``folder/site.conf``, listening on 127.0.0.1:``listen`` and forwarding
    to cdrgate on 127.0.0.1:``upstream`` where given (else its own ports)."""
    _, openssl = tools()
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=pbx.example.com", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    site = (
        (DEPLOY / "nginx-cdrgate.conf")
        .read_text()
        .replace("/etc/ssl/certs/pbx.example.com.pem", str(cert))
        .replace("/etc/ssl/private/pbx.example.com.key", str(key))
        .replace("/var/log/nginx/", f"{folder}/")
    )
    if listen is not None:
        site = site.replace("listen 8088 ssl;", f"listen 127.0.0.1:{listen} ssl;")
    if upstream is not None:
        site = site.replace("server 127.0.0.1:8089;", f"server 127.0.0.1:{upstream};")
    path = folder / "site.conf"
    path.write_text(site)
    return path
