"""All configuration in one typed object; every default and environment variable lives here.

``SETTINGS`` is the single table of settings: ``Settings.from_env`` reads it, the README lists
it (a test keeps the two in step) and the CLI maps its options onto it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cdrgate.errors import UsageError

DEFAULT_DATABASE = "sqlite:///cdrgate.db"
EmptyDownload = Literal["errno", "header"]


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str

    @property
    def env(self) -> str:
        return "CDRGATE_" + self.name.upper()


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _empty_download(text: str) -> EmptyDownload:
    if text not in ("errno", "header"):
        raise ValueError("must be 'errno' or 'header'")
    return text  # type: ignore[return-value]


def _networks(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "database", DEFAULT_DATABASE, "SQLAlchemy URL of the CDR store (sqlite or postgresql)."
    ),
    Setting("host", "127.0.0.1", "Address `serve` binds to.", str),
    Setting("port", 8088, "Port `serve` listens on (the device's HTTPS port).", int),
    Setting("token_idle_seconds", 1800, "Idle lifetime of a login token.", int),
    Setting("random_ttl_seconds", 30, "Lifetime of a download random.", int),
    Setting("lockout_failures", 5, "Consecutive failed logins that lock a client IP.", int),
    Setting("lockout_seconds", 600, "How long a locked client IP stays locked.", int),
    Setting(
        "empty_download",
        "errno",
        "What a download matching no CDR returns: `errno` (20021) or `header` (header-only CSV).",
        _empty_download,
    ),
    Setting("max_body_bytes", 65536, "Largest accepted API request body.", int),
    Setting(
        "trusted_proxies",
        (),
        "Comma list of proxy IPs/networks whose X-Forwarded-For is believed.",
        _networks,
    ),
    Setting("access_log", True, "Write an access log line per request (tokens redacted).", _bool),
    Setting(
        "csv_safe",
        False,
        "Neutralise CSV cells starting with = + - @ (formula injection); off = device bytes.",
        _bool,
    ),
    Setting(
        "permitted_networks",
        (),
        "Comma list of client IPs/networks allowed to use the API; empty = everyone.",
        _networks,
    ),
    Setting("tls_cert", "", "PEM certificate file: `serve` speaks HTTPS when set.", str),
    Setting("tls_key", "", "PEM private key file for `tls_cert`.", str),
    Setting(
        "self_signed",
        False,
        "Serve HTTPS with a self-signed certificate created once next to the database.",
        _bool,
    ),
    Setting("audit_days", 365, "Days download audit records are kept (0 = forever).", int),
    Setting("ingest_max_body_bytes", 1048576, "Largest accepted NewCdr push body.", int),
    Setting(
        "retention_max_records", 0, "Keep at most this many CDRs, newest first (0 = no limit).", int
    ),
    Setting("retention_max_age_days", 0, "Remove CDRs older than this (0 = no limit).", int),
    Setting(
        "retention_interval_seconds",
        3600,
        "How often `serve` applies the retention limits (0 = never; `cdrgate prune` still works).",
        int,
    ),
)


@dataclass(frozen=True)
class Settings:
    database: str = DEFAULT_DATABASE
    host: str = "127.0.0.1"
    port: int = 8088
    token_idle_seconds: int = 1800
    random_ttl_seconds: int = 30
    lockout_failures: int = 5
    lockout_seconds: int = 600
    empty_download: EmptyDownload = "errno"
    max_body_bytes: int = 65536
    trusted_proxies: tuple[str, ...] = ()
    access_log: bool = True
    csv_safe: bool = False
    permitted_networks: tuple[str, ...] = ()
    tls_cert: str = ""
    tls_key: str = ""
    self_signed: bool = False
    audit_days: int = 365
    ingest_max_body_bytes: int = 1048576
    retention_max_records: int = 0
    retention_max_age_days: int = 0
    retention_interval_seconds: int = 3600

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``CDRGATE_*`` variables, then explicit overrides (None = not given)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            raw = environ.get(setting.env)
            if raw is None:
                continue
            try:
                values[setting.name] = setting.parse(raw)
            except ValueError as exc:
                raise UsageError(f"{setting.env}: {exc}") from None
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)
