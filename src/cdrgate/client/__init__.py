"""Client SDK for the Yeastar S-Series CDR API (a PBX, or cdrgate itself).

from cdrgate.client import CdrClient

with CdrClient("https://pbx:8088", "api", password, verify="pbx-ca.pem") as pbx:
    for cdr in pbx.iter_cdrs("all", "2026-05-01 00:00:00", "2026-05-31 23:59:59"):
        print(cdr.timestart, cdr.callfrom, cdr.callto, cdr.talkduraction)
"""

# The names load on first use (PEP 562): importing ``cdrgate.client`` or one of its light
# modules (``_windows``) must not import httpx, which costs every ``cdrgate`` command ~0.2 s
# at start-up whether or not it talks to a PBX.
import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from cdrgate.client._changes import ChangesPage
    from cdrgate.client._client import (
        API_VERSIONS,
        CdrClient,
        DownloadResult,
        DownloadStats,
        split_api_url,
        split_urls,
    )
    from cdrgate.client._errors import (
        AuthenticationFailed,
        ClientError,
        ConnectError,
        LockedOut,
        PbxError,
        ProtocolError,
        TlsError,
    )
    from cdrgate.client._recordings import RecordingResult
    from cdrgate.client._records import Cdr

_HOMES = {
    "ChangesPage": "_changes",
    "API_VERSIONS": "_client",
    "CdrClient": "_client",
    "DownloadResult": "_client",
    "DownloadStats": "_client",
    "split_api_url": "_client",
    "split_urls": "_client",
    "AuthenticationFailed": "_errors",
    "ClientError": "_errors",
    "ConnectError": "_errors",
    "LockedOut": "_errors",
    "PbxError": "_errors",
    "ProtocolError": "_errors",
    "TlsError": "_errors",
    "RecordingResult": "_recordings",
    "Cdr": "_records",
}


def __getattr__(name: str) -> _typing.Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # later lookups are plain module attributes
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


__all__ = [
    "API_VERSIONS",
    "AuthenticationFailed",
    "Cdr",
    "CdrClient",
    "ChangesPage",
    "ClientError",
    "ConnectError",
    "DownloadResult",
    "DownloadStats",
    "LockedOut",
    "PbxError",
    "ProtocolError",
    "RecordingResult",
    "TlsError",
    "split_api_url",
    "split_urls",
]
