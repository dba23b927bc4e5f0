"""What the SDK raises. Nothing from the HTTP library escapes; catch at the level you need.

ClientError                 anything the SDK raises on purpose (a CdrgateError)
├── ConnectError            the PBX could not be reached, or the connection broke
│   └── TlsError            the PBX's certificate was refused (use a CA file or opt out)
├── ProtocolError           the PBX answered something that is not the S-Series API
└── PbxError                the PBX answered {"status":"Failed","errno":...}; .errno
    ├── AuthenticationFailed  20003: wrong username or password
    └── LockedOut             20002: this address is locked out; .retry_at says when
"""

from __future__ import annotations

import time
from datetime import datetime

from cdrgate.errors import CdrgateError, Errno, meaning


class ClientError(CdrgateError):
    """Base of everything the SDK raises."""


class ConnectError(ClientError):
    """The PBX could not be reached, timed out, or the connection broke mid-answer."""


class TlsError(ConnectError):
    """TLS failed, usually an untrusted (self-signed) certificate."""


class ProtocolError(ClientError):
    """The answer is not what the S-Series API sends (HTML page, bad JSON, broken CSV)."""


class PbxError(ClientError):
    """The PBX refused a request; ``errno`` is its code as sent (a string)."""

    def __init__(self, errno: str, action: str) -> None:
        super().__init__(f"{action} failed: {meaning(errno)} (errno {errno})")
        self.errno = errno
        self.action = action

    @property
    def known(self) -> Errno | None:
        """The errno as an :class:`Errno`, or None for codes cdrgate does not list."""
        try:
            return Errno(self.errno)
        except ValueError:
            return None


class AuthenticationFailed(PbxError):
    """20003. Not retried: every attempt counts towards the PBX's lockout."""


class LockedOut(PbxError):
    """20002. The SDK will not contact this PBX again before ``retry_at`` (local time)."""

    def __init__(self, errno: str, action: str, retry_at: datetime) -> None:
        super().__init__(errno, action)
        self.retry_at = retry_at
        self.args = (
            f"{self.args[0]}; retry after {retry_at:%Y-%m-%d %H:%M:%S} "
            "(or ask the PBX admin to unblock this address)",
        )


# 20010: the PBX (or a cdrgate at its download limits) is busy and asks to be tried again
# shortly with a new random: a CDR or recording download waits this long before each new
# try, then the error is the caller's.
BUSY_WAITS_S = (0.5, 1.0, 2.0)


def waited_out_busy(exc: PbxError, waits_so_far: int) -> bool:
    """Whether ``exc`` is a 20010 to try again after (``waits_so_far`` waits made before):
    if so, its wait is over when this returns."""
    if exc.errno != Errno.SERVER_BUSY or waits_so_far >= len(BUSY_WAITS_S):
        return False
    time.sleep(BUSY_WAITS_S[waits_so_far])
    return True
