"""Client SDK for the Yeastar S-Series CDR API (a PBX, or cdrgate itself).

from cdrgate.client import CdrClient

with CdrClient("https://pbx:8088", "api", password, verify="pbx-ca.pem") as pbx:
    for cdr in pbx.iter_cdrs("all", "2026-05-01 00:00:00", "2026-05-31 23:59:59"):
        print(cdr.timestart, cdr.callfrom, cdr.callto, cdr.talkduraction)
"""

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
