"""API passwords at rest: scrypt over the md5 hex the client sends.

A Yeastar client never sends the password itself, only ``md5(password)`` in lowercase hex,
so that md5 is the secret to protect. It is stored as a salted scrypt hash; the bare md5 and
the password are never written anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_SCHEME = "scrypt"


def md5_hex(password: str) -> str:
    return hashlib.md5(password.encode("utf-8"), usedforsecurity=False).hexdigest()


def normalise_md5(value: str) -> str:
    # Some clients hex-encode in upper case (C# "X2"); the digest is the same.
    return value.strip().lower()


def hash_md5(md5: str, *, n: int = SCRYPT_N) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(normalise_md5(md5), salt, n, SCRYPT_R, SCRYPT_P)
    return "$".join((_SCHEME, str(n), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)))


def verify_md5(md5: str, stored: str | None) -> bool:
    """Constant-time check; with ``stored=None`` it still spends the time (no user oracle)."""
    if stored is None:
        _scrypt(normalise_md5(md5), b"\0" * 16, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != _SCHEME:
            return False
        expected = base64.b64decode(digest)
        actual = _scrypt(normalise_md5(md5), base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def new_password() -> str:
    """A random API password for a new account (about 128 bits)."""
    return secrets.token_urlsafe(16)


def secret_hash(secret: str) -> str:
    """How tokens and randoms are stored: sha256, so a database copy holds no live secrets."""
    return hashlib.sha256(secret.encode("ascii", "replace")).hexdigest()
