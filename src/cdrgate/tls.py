"""HTTPS the way PBXs ship it: a self-signed certificate created once and then reused.

Real Yeastar clients talk to ``https://host:8088`` with verification turned off, so any
certificate works for them; careful clients can pin the generated certificate as their CA.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from cdrgate.errors import UsageError
from cdrgate.settings import Settings

CERT_NAME = "cdrgate-cert.pem"
KEY_NAME = "cdrgate-key.pem"
VALID_DAYS = 3650  # devices keep theirs for years; nobody rotates a pinned self-signed cert
RENEW_BEFORE_DAYS = 30
RSA_BITS = 2048  # RSA rather than EC: old embedded-era client stacks all speak it


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path


def tls_files(cert: str, key: str) -> TlsFiles:
    """Check a user-supplied certificate/key pair before the server tries to use it."""
    if not cert or not key:
        raise UsageError("give both --tls-cert and --tls-key")
    files = TlsFiles(Path(cert), Path(key))
    for path in (files.cert, files.key):
        if not path.is_file():
            raise UsageError(f"TLS file not found: {path}")
    return files


def ensure_self_signed(directory: Path, hosts: tuple[str, ...] = ()) -> TlsFiles:
    """The certificate in ``directory``, created if missing, unreadable or about to expire."""
    files = TlsFiles(directory / CERT_NAME, directory / KEY_NAME)
    if _reusable(files):
        return files
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    cert = _certificate(key, _subject_names(hosts))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Key first, cert last: a cert on disk always has its key next to it.
    _write_atomically(files.key, key_pem, mode=0o600)
    _write_atomically(files.cert, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return files


def _reusable(files: TlsFiles) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return False
    renew_at = cert.not_valid_after_utc - datetime.timedelta(days=RENEW_BEFORE_DAYS)
    if datetime.datetime.now(datetime.UTC) >= renew_at:
        return False
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    return key.public_key().public_bytes(encoding, public) == cert.public_key().public_bytes(
        encoding, public
    )


def _subject_names(hosts: tuple[str, ...]) -> list[x509.GeneralName]:
    names: dict[str, x509.GeneralName] = {}
    for host in ("localhost", "127.0.0.1", "::1", socket.gethostname(), *hosts):
        if not host or host in ("0.0.0.0", "::"):  # noqa: S104 - wildcard binds name no host
            continue
        try:
            names[host] = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            names[host] = x509.DNSName(host)
    return list(names.values())


def _certificate(key: rsa.RSAPrivateKey, names: list[x509.GeneralName]) -> x509.Certificate:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "cdrgate"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cdrgate self-signed"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate small clock skew
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
        # CA:TRUE lets a client use this very file as its trust anchor (pinning).
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=True,
                key_cert_sign=True,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def data_directory(database_url: str) -> Path:
    """Where ``--self-signed`` keeps its files: next to a SQLite database, else the cwd."""
    prefix = "sqlite:///"
    if database_url.startswith(prefix):
        location = database_url[len(prefix) :].split("?", 1)[0]
        if location and location != ":memory:":
            return Path(location).resolve().parent
    return Path.cwd()


def server_files(settings: Settings) -> TlsFiles | None:
    """The certificate `serve` should use, or None for plain HTTP."""
    if settings.self_signed and (settings.tls_cert or settings.tls_key):
        raise UsageError("use either --self-signed or --tls-cert/--tls-key, not both")
    if settings.self_signed:
        return ensure_self_signed(data_directory(settings.database), (settings.host,))
    if settings.tls_cert or settings.tls_key:
        return tls_files(settings.tls_cert, settings.tls_key)
    return None


def readable_by_others(key: Path) -> bool:
    """Whether every local user may read the private key (mode o+r), and so impersonate the
    server. Group read is left alone: Debian's ssl-cert group (0640) is a deliberate choice."""
    return bool(key.stat().st_mode & stat.S_IROTH)


def fingerprint(cert: Path) -> str:
    """SHA-256 fingerprint, as clients that pin a certificate show it."""
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    return loaded.fingerprint(hashes.SHA256()).hex(":").upper()
