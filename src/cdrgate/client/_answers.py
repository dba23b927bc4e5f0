"""Reading a PBX's answers: the API's envelope, reads capped at what an answer can hold, and
the error for an answer that stopped coming (its deadline passed, or the connection broke).

Shared by CDR and recording downloads (client/_client.py, client/_recordings.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from cdrgate.client._deadline import DeadlinePassed
from cdrgate.client._errors import ConnectError, PbxError, ProtocolError

# An errno answer is a few dozen bytes; read no more of a body that should be one.
MAX_ERROR_BODY = 64 * 1024


def envelope(response: httpx.Response, body: bytes, action: str) -> dict[str, Any]:
    """The JSON answer if it is Success; PbxError if Failed; ProtocolError if neither."""
    if response.status_code != 200:
        raise ProtocolError(status_problem(response, action))
    try:
        data = json.loads(body)
    except ValueError:
        raise ProtocolError(f"{action}: the answer is not JSON (is this a PBX API URL?)") from None
    if not isinstance(data, dict) or data.get("status") not in ("Success", "Failed"):
        raise ProtocolError(f"{action}: not an S-Series API answer")
    if data["status"] == "Failed":
        raise PbxError(str(data.get("errno", "")), action)
    return data


def status_problem(response: httpx.Response, action: str) -> str:
    """Why a non-200 answer is not the API's, in the words that point at the fix."""
    status = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
    if response.is_redirect:
        # Not followed: the token and random travel in the query, and the API never redirects.
        where = response.headers.get("location", "nowhere")
        return f"{action}: {status}, a redirect to {where}; give the PBX's API address itself"
    if response.status_code >= 500:
        return f"{action}: {status}: the PBX (or a proxy in front of it) failed; try again later"
    return f"{action}: {status} (is this an S-Series API URL?)"


def read_capped(chunks: Iterator[bytes], limit: int) -> bytes:
    """The chunks joined, stopping once past ``limit``: longer than it means "too long"."""
    body = b""
    for chunk in chunks:
        body += chunk
        if len(body) > limit:
            break
    return body


def cut_short(exc: httpx.HTTPError, base_url: str, during: str) -> ConnectError:
    """The error for an answer that stopped coming: its deadline passed, or the link broke."""
    if isinstance(exc, DeadlinePassed):
        return ConnectError(f"{base_url} did not finish {during}: {exc}")
    return ConnectError(f"the connection to {base_url} broke during {during}: {first_line(exc)}")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
