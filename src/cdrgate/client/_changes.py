"""The change feed of a cdrgate far end (``GET /v1/cdrs/changes``), read by the SDK.

A real S-Series PBX has no such resource; ``read_page`` then answers None and the caller
keeps to time windows. A cdrgate answers every CDR it stored after a sequence number, in
storage order, which is how a mirror catches CDRs stored late with an old start time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeGuard

import httpx

from cdrgate.cdr import CSV_COLUMNS
from cdrgate.client._errors import PbxError, ProtocolError
from cdrgate.client._records import Cdr, cdr_from_fields

PATH = "/v1/cdrs/changes"
MAX_LIMIT = 10_000


@dataclass(frozen=True)
class ChangesPage:
    """CDRs stored after a sequence number, each with its own sequence number."""

    cdrs: list[tuple[int, Cdr]]
    next_after: int  # pass as ``after`` next time
    last_seq: int  # the newest sequence number the far end held when it answered


def read_page(response: httpx.Response) -> ChangesPage | None:
    """The page in ``response``; None when the far end has no change feed; PbxError for a
    dead token (so the caller logs in again); ProtocolError for anything else unexpected."""
    status = response.status_code
    if status == 401 and "errno" in (problem := _json(response)):
        raise PbxError(str(problem["errno"]), "cdr changes")
    if status >= 500:
        raise ProtocolError(f"cdr changes: HTTP {status}")
    if status != 200:
        # Not a cdrgate's feed: a PBX's web server answers paths it lacks with 404, or with
        # a redirect to its login page, a 401/403 of its own: all mean "no feed here".
        return None
    body = _json(response)
    items, next_after, last_seq = body.get("items"), body.get("next_after"), body.get("last_seq")
    if not isinstance(items, list) or not _count(next_after) or not _count(last_seq):
        return None  # a 200 of another shape: some other service at that path
    return ChangesPage([_change(item) for item in items], next_after, last_seq)


def _count(value: object) -> TypeGuard[int]:
    return type(value) is int and value >= 0


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = json.loads(response.content)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _change(item: Any) -> tuple[int, Cdr]:
    if not isinstance(item, dict) or not _count(item.get("seq")):
        raise ProtocolError("cdr changes: an item without its seq")
    try:
        fields = [str(item[name]) for name in CSV_COLUMNS]
        return item["seq"], cdr_from_fields(fields)
    except (KeyError, ValueError) as exc:
        raise ProtocolError(f"cdr changes: bad CDR in the feed: {exc}") from None
