"""All configuration in one typed object; every default and environment variable lives here.

Each setting is declared once, as a field of :class:`Settings` with its default, help text and
parser. ``SETTINGS`` is the table derived from those fields: ``Settings.from_env`` reads it, the
README lists it (a test keeps the two in step) and the CLI maps its options onto it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar

from cdrgate.errors import UsageError

DEFAULT_DATABASE = "sqlite:///cdrgate.db"
EmptyDownload = Literal["errno", "header"]
LogFormat = Literal["text", "json"]


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


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"not a whole number: {text!r}") from None


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise ValueError(f"must be at least 1, not {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise ValueError(f"must be 0 or more, not {value}")
    return value


def _port(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"must be a TCP port from 0 to 65535, not {value}")
    return value


def _log_format(text: str) -> LogFormat:
    if text not in ("text", "json"):
        raise ValueError("must be 'text' or 'json'")
    return text  # type: ignore[return-value]


def _networks(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _replicas(text: str) -> tuple[str, ...]:
    urls = _networks(text)
    for url in urls:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"a replica must be a postgresql:// URL, not {url!r}")
    return urls


_T = TypeVar("_T")


def _setting(default: _T, help: str, parse: Callable[[str], Any] = str) -> _T:
    """A field of :class:`Settings` with its help text and parser, declared in one place."""
    return field(default=default, metadata={"help": help, "parse": parse})


@dataclass(frozen=True)
class Settings:
    database: str = _setting(
        DEFAULT_DATABASE, "SQLAlchemy URL of the CDR store (sqlite or postgresql)."
    )
    host: str = _setting("127.0.0.1", "Address `serve` binds to.")
    port: int = _setting(8088, "Port `serve` listens on (the device's HTTPS port).", _port)
    token_idle_seconds: int = _setting(1800, "Idle lifetime of a login token.", _int)
    random_ttl_seconds: int = _setting(30, "Lifetime of a download random.", _int)
    lockout_failures: int = _setting(5, "Consecutive failed logins that lock a client IP.", _int)
    lockout_seconds: int = _setting(600, "How long a locked client IP stays locked.", _int)
    empty_download: EmptyDownload = _setting(
        "errno",
        "What a download matching no CDR returns: `errno` (20021) or `header` (header-only CSV).",
        _empty_download,
    )
    max_body_bytes: int = _setting(65536, "Largest accepted API request body.", _int)
    trusted_proxies: tuple[str, ...] = _setting(
        (), "Comma list of proxy IPs/networks whose X-Forwarded-For is believed.", _networks
    )
    idle_timeout_seconds: int = _setting(
        10,
        "Seconds `serve` waits for a TLS handshake, a request head (first or kept-alive), or more of a request body, before closing a connection.",
        _positive_int,
    )
    max_connections: int = _setting(
        1000,
        "Open connections a `serve` process accepts; requests past it are answered 503.",
        _positive_int,
    )
    access_log: bool = _setting(
        True, "Write an access log line per request (tokens redacted).", _bool
    )
    csv_safe: bool = _setting(
        False,
        "Neutralise CSV cells a spreadsheet would evaluate (formula injection); off = device bytes.",
        _bool,
    )
    permitted_networks: tuple[str, ...] = _setting(
        (),
        "Comma list of client IPs/networks allowed to use the API; empty = everyone.",
        _networks,
    )
    tls_cert: str = _setting("", "PEM certificate file: `serve` speaks HTTPS when set.")
    tls_key: str = _setting("", "PEM private key file for `tls_cert`.")
    self_signed: bool = _setting(
        False,
        "Serve HTTPS with a self-signed certificate created once next to the database.",
        _bool,
    )
    export_max_concurrent: int = _setting(
        32,
        "Long transfers streaming at once per server process: multi-page CDR downloads, "
        "recordings, query-API CSV (0 = no limit); beyond: 20010.",
        _int,
    )
    export_max_per_account: int = _setting(
        8, "The same transfers at once per API account and process (0 = no limit).", _int
    )
    download_min_rate: int = _setting(
        1024,
        "A download reading slower than this many bytes/s over `download_rate_window` is cut.",
        _int,
    )
    download_rate_window: int = _setting(
        60, "Seconds over which `download_min_rate` is measured (0 = never cut).", _int
    )
    http10_spool_max_bytes: int = _setting(
        268435456,
        "Largest download an HTTP/1.0 client gets (spooled to learn its length); beyond: 20010.",
        _int,
    )
    audit_days: int = _setting(365, "Days download audit records are kept (0 = forever).", _int)
    ingest_max_body_bytes: int = _setting(1048576, "Largest accepted NewCdr push body.", _int)
    retention_max_records: int = _setting(
        0, "Keep at most this many CDRs, newest first (0 = no limit).", _int
    )
    retention_max_age_days: int = _setting(0, "Remove CDRs older than this (0 = no limit).", _int)
    retention_interval_seconds: int = _setting(
        3600,
        "How often `serve` applies the retention limits (0 = never; `cdrgate prune` still works).",
        _int,
    )
    recordings: str = _setting(
        "",
        "Folder of call recordings served by recording/download (sub-folders too; empty = none).",
    )
    recordings_max_age_days: int = _setting(
        0,
        "Remove recordings whose newest CDR is older (0 = no limit; `serve` on its retention "
        "schedule, and `cdrgate prune`).",
        _int,
    )
    metrics: bool = _setting(
        True, "Serve Prometheus metrics at `/metrics` (same permit rules as the API).", _bool
    )
    drain_seconds: int = _setting(
        30, "On SIGTERM, how long running downloads and pushes may finish before exit.", _int
    )
    replicas: tuple[str, ...] = _setting(
        (),
        "Comma list of PostgreSQL streaming replica URLs that serve CDR exports (primary: `database`).",
        _replicas,
    )
    max_replica_lag_ms: int = _setting(
        1000,
        "How long an export waits for a replica to replay the primary's position; later: skipped.",
        _positive_int,
    )
    # How much of the store file a server's SQLite connections read through a memory map
    # (SQLite's mmap_size; storage/sqlite_settings.py). Without it each page a read misses in
    # its own cache is a pread() from the OS page cache: at 1M rows a small flow's request
    # spent ~56 us of system time in them, ~17 us mapped, and ~50 us less of the server's CPU
    # (bench/RESULTS.md, twenty-sixth round). SQLite caps it at its compile-time
    # SQLITE_MAX_MMAP_SIZE (~2 GiB on Linux); a larger store's pages past it are read as before.
    sqlite_mmap_mib: int = _setting(
        1024,
        "MiB of a SQLite store `serve` reads through a memory map (0 = off; see docs/storage.md).",
        _non_negative_int,
    )
    log_format: LogFormat = _setting(
        "text", "`serve` log lines: `text` or `json` (one object per line).", _log_format
    )

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        file: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Defaults, then a config ``file``'s values (already parsed), then ``CDRGATE_*``
        variables, then explicit overrides (None = not given)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = dict(file or {})
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


SETTINGS: tuple[Setting, ...] = tuple(
    Setting(f.name, f.default, f.metadata["help"], f.metadata["parse"]) for f in fields(Settings)
)
