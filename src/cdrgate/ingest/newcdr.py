"""The Yeastar NewCdr event (spec section 8) as a :class:`CdrRecord`.

v1 names the event in ``action``, v2 in ``event``. The destination trunk and the call id
have several spellings across the docs (spec 6.3); all are accepted. v1 omits empty fields
and v2 sends them as ``""``: a missing key is an empty value, and an empty duration is 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cdrgate.cdr import CdrRecord, parse_seconds, without_nul
from cdrgate.timefmt import parse_pbx_time

EVENT_NAME = "NewCdr"
DISCRIMINATORS = ("event", "action")  # v2, v1
CALLID_KEYS = ("callid", "cdrid")
# CSV spelling, v1 event, v2 event (sic), early v1.0.1 draft (sic).
DST_TRUNK_KEYS = ("dsttrunkname", "desttrunkname", "dsttrcunkname", "dstrunkname")


class BadTime(ValueError):
    """``timestart`` is present but not a real ``yyyy-mm-dd hh:mm:ss`` time."""


def event_name(event: Mapping[str, Any]) -> str | None:
    """The event's name (``NewCdr``, ``ExtensionStatus``, ...); None if it carries none."""
    for key in DISCRIMINATORS:
        value = event.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def is_newcdr(event: Mapping[str, Any]) -> bool:
    name = event_name(event)
    return name is not None and name.lower() == EVENT_NAME.lower()


def record_from_event(event: Mapping[str, Any], default_sn: str = "") -> CdrRecord:
    """Map one NewCdr event; ValueError names the field that is wrong.

    ``default_sn`` stands in for a missing or empty ``sn`` (the pushing source's serial).
    """
    callid = _first(event, CALLID_KEYS).strip()
    if not callid:
        raise ValueError("callid is empty")
    timestart = _text(event, "timestart").strip()
    if not timestart:
        raise ValueError("timestart is empty")
    try:
        parse_pbx_time(timestart)
    except ValueError as exc:
        raise BadTime(f"timestart: {exc}") from None
    return CdrRecord(
        callid=callid,
        timestart=timestart,
        callfrom=_text(event, "callfrom"),
        callto=_text(event, "callto"),
        callduraction=_seconds(event, "callduraction"),
        talkduraction=_seconds(event, "talkduraction"),
        srctrunkname=_text(event, "srctrunkname"),
        dsttrunkname=_first(event, DST_TRUNK_KEYS),
        status=_text(event, "status"),
        type=_text(event, "type"),
        pincode=_text(event, "pincode"),
        recording=_text(event, "recording"),
        didnumber=_text(event, "didnumber"),
        sn=_text(event, "sn").strip() or default_sn,
    )


def _first(event: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    for key in keys:
        value = _text(event, key)
        if value:
            return value
    return ""


def _text(event: Mapping[str, Any], key: str) -> str:
    value = event.get(key)
    if value is None:
        return ""
    # v2 tables type some fields as integers (callto, pincode, didnumber); examples send text.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{key} must be a string or a whole number, not {_json_kind(value)}")
    return without_nul(str(value))


def _seconds(event: Mapping[str, Any], key: str) -> int:
    text = _text(event, key)
    return parse_seconds(key, text) if text.strip() else 0


def _json_kind(value: object) -> str:
    """``value``'s kind as the sender wrote it in JSON (not Python's type name)."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, float):
        return f"the number {value!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
