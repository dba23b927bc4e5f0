"""Error codes and the server-side exception tree.

The Yeastar API reports every failure as HTTP 200 with ``{"status":"Failed","errno":"NNNNN"}``.
:class:`Errno` is the one list of those codes; everything else imports it.

    CdrgateError
    ├── ApiError            an API request failed with a documented errno
    ├── StorageUnavailable  the database could not be reached or stayed locked
    ├── SchemaError         the database schema is missing or newer than this code
    ├── ImportFailed        a CDR file had a bad row (carries file and line)
    ├── BadParameter        a query API parameter is unusable (HTTP 400, names it)
    └── UsageError          a command was given something it cannot use
"""

from __future__ import annotations

from enum import StrEnum


class Errno(StrEnum):
    """The S-Series API error codes cdrgate emits (spec section 9)."""

    XML_NOT_SUPPORTED = "10002"
    UNSUPPORTED_REQUEST = "10003"
    PARAMETER_EMPTY = "10004"
    JSON_ONLY = "20000"
    POST_ONLY = "20001"
    LOCKED_OUT = "20002"
    BAD_CREDENTIALS = "20003"
    TOKEN_UNKNOWN = "20004"
    TOKEN_EMPTY = "20005"
    TOKEN_EXPIRED = "20006"
    PORT_ERROR = "20008"
    # The device's "failed to hand the request to apisrv": cdrgate answers it when the
    # download limits are reached (retry shortly with a new random).
    SERVER_BUSY = "20010"
    HEARTBEAT_FAILED = "20011"
    RECORDING_RANDOM_INVALID = "20012"
    RECORDING_NOT_FOUND = "20014"
    ALLOWEDIP_ERROR = "20015"
    CDR_TIME_FORMAT = "20019"
    CDR_RANDOM_INVALID = "20020"
    CDR_NOT_FOUND = "20021"
    APISRV_DOWN = "30003"


# What each errno means, in words: for the server log, the SDK's messages and the docs.
MEANINGS: dict[str, str] = {
    Errno.XML_NOT_SUPPORTED: "XML is not supported",
    Errno.UNSUPPORTED_REQUEST: "request not supported (wrong API version?)",
    Errno.PARAMETER_EMPTY: "a required parameter is empty",
    Errno.JSON_ONLY: "only JSON is supported",
    Errno.POST_ONLY: "only POST is supported",
    Errno.LOCKED_OUT: "locked out after repeated failed logins",
    Errno.BAD_CREDENTIALS: "invalid username or password",
    Errno.TOKEN_UNKNOWN: "no such token",
    Errno.TOKEN_EMPTY: "token is empty",
    Errno.TOKEN_EXPIRED: "token timed out",
    Errno.PORT_ERROR: "port error",
    Errno.SERVER_BUSY: "server busy (download limits reached)",
    Errno.HEARTBEAT_FAILED: "heartbeat failed",
    Errno.RECORDING_RANDOM_INVALID: "recording random invalid or expired",
    Errno.RECORDING_NOT_FOUND: "no such recording",
    Errno.ALLOWEDIP_ERROR: "this address may not use the download link",
    Errno.CDR_TIME_FORMAT: "bad CDR time format",
    Errno.CDR_RANDOM_INVALID: "download random invalid or expired",
    Errno.CDR_NOT_FOUND: "no CDR matches",
    Errno.APISRV_DOWN: "the PBX's API service is not running",
}


# Codes a real device may send that cdrgate never does (spec section 9): the SDK names them.
DEVICE_ONLY_MEANINGS: dict[str, str] = {
    "20007": "data is empty",
    "20009": "blank request",
    "20013": "verification code error",
    "20016": "voicemail status parameter wrong",
    "20017": "voicemail random invalid",
    "20018": "voice file does not exist",
    "30001": "JSON memory allocation failed on the PBX",
}


def meaning(errno: str) -> str:
    """The errno in words; codes no list has (a device may send more) are unknown."""
    return MEANINGS.get(errno) or DEVICE_ONLY_MEANINGS.get(errno, "unknown error")


class CdrgateError(Exception):
    """Base of every error cdrgate raises on purpose."""


class ApiError(CdrgateError):
    """A request failed; ``errno`` is what the client sees."""

    def __init__(self, errno: Errno, detail: str = "") -> None:
        super().__init__(f"{errno.value} {errno.name}" + (f": {detail}" if detail else ""))
        self.errno = errno
        self.detail = detail


class StorageUnavailable(CdrgateError):
    """The database is down, unreachable or locked for too long."""


class SourceBroken(CdrgateError):
    """A download's source failed after its answer began (a recording file that shrank or
    could not be read): the transfer ends without its last bytes, so the client sees it cut."""


class SchemaError(CdrgateError):
    """The database schema does not match this version of cdrgate."""


class ImportFailed(CdrgateError):
    """A CDR file could not be imported; nothing from it was stored."""

    def __init__(self, source: str, line: int | None, reason: str) -> None:
        # No line for what concerns the whole file (it does not exist, say).
        super().__init__(f"{source}: {reason}" if line is None else f"{source}:{line}: {reason}")
        self.source = source
        self.line = line
        self.reason = reason


class UsageError(CdrgateError):
    """Bad input to a command (not to the HTTP API)."""


class BadParameter(CdrgateError):
    """A parameter of the JSON query API (``/v1/...``) cannot be used; HTTP 400 names it."""

    def __init__(self, parameter: str, reason: str) -> None:
        super().__init__(f"{parameter}: {reason}")
        self.parameter = parameter
        self.reason = reason
