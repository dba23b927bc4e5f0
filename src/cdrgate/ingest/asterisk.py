"""Asterisk ``cdr_csv`` (Master.csv) rows as :class:`CdrRecord`.

The default layout has 16 columns; ``loguniqueid=yes`` appends ``uniqueid`` and
``loguserfield=yes`` appends ``userfield`` (cdr.conf, section ``[csv]``). All three widths
are accepted. See docs/ingest.md for the mapping table.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from cdrgate.cdr import CdrRecord, parse_seconds, row_without_nul
from cdrgate.ingest.profile import AccountcodeAs, SourceProfile
from cdrgate.timefmt import parse_pbx_time

COLUMNS = (
    "accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp",
    "lastdata", "start", "answer", "end", "duration", "billsec", "disposition", "amaflags",
    "uniqueid", "userfield",
)  # fmt: skip
BASE_WIDTH = 16
WIDTHS = (BASE_WIDTH, BASE_WIDTH + 1, BASE_WIDTH + 2)
STATUS = {
    "ANSWERED": "ANSWERED",
    "NO ANSWER": "NO ANSWER",
    "BUSY": "BUSY",
    "FAILED": "FAILED",
    "CONGESTION": "FAILED",  # Asterisk 12+ reports congestion separately; Yeastar has no such status
}
# "PJSIP/provider-0000001a" -> "provider"; "Local/100@from-internal-00000003;2" -> "100@from-internal"
_CHANNEL_SUFFIX = re.compile(r"-[0-9a-fA-F]+(;\d+)?$")


def channel_peer(channel: str) -> str:
    """The endpoint (trunk or phone) a channel name belongs to; "" for none."""
    _tech, sep, rest = channel.partition("/")
    if not sep:
        return ""
    return _CHANNEL_SUFFIX.sub("", rest)


def _party_peer(channel: str) -> str:
    # A Local channel is dialplan plumbing between two legs, not a party's own endpoint.
    if channel.strip().lower().startswith("local/"):
        return ""
    return channel_peer(channel.strip())


def record_from_fields(fields: Sequence[str], profile: SourceProfile) -> tuple[CdrRecord, int]:
    """Map one Master.csv row (and its start as wall-clock seconds); ValueError says what is
    wrong with it."""
    if len(fields) not in WIDTHS:
        raise ValueError(f"expected 16 to 18 columns, found {len(fields)}")
    row = dict(zip(COLUMNS, row_without_nul(fields), strict=False))
    start = row["start"].strip()
    ts = parse_pbx_time(start)
    disposition = row["disposition"].strip().upper()
    status = STATUS.get(disposition)
    if status is None:
        raise ValueError(f"unknown disposition {row['disposition']!r}")
    callee_peer = _party_peer(row["dstchannel"])
    call_type, src_trunk, dst_trunk = profile.direction(
        row["src"], row["dst"], _party_peer(row["channel"]), callee_peer
    )
    callto, did = row["dst"], ""
    if call_type == "Inbound" and not profile.is_extension(callto):
        # The caller dialled a DID; the dialplan routed it to the extension that answered.
        did = callto
        if callee_peer and profile.is_extension(callee_peer):
            callto = callee_peer
    pincode = row["accountcode"] if profile.accountcode_as is AccountcodeAs.pincode else ""
    record = CdrRecord(
        callid=row.get("uniqueid", "").strip() or derived_callid(fields),
        timestart=start,
        callfrom=row["src"],
        callto=callto,
        callduraction=parse_seconds("duration", row["duration"]),
        talkduraction=parse_seconds("billsec", row["billsec"]),
        srctrunkname=src_trunk,
        dsttrunkname=dst_trunk,
        status=status,
        type=call_type,
        pincode=pincode,
        recording="",
        didnumber=did,
        sn=profile.sn,
    )
    return record, ts


def looks_like_row(fields: Sequence[str]) -> bool:
    """A headerless Master.csv row, recognised for ``import`` hints."""
    return len(fields) in WIDTHS and fields[14].strip().upper() in STATUS


def derived_callid(fields: Sequence[str]) -> str:
    """A stable id for rows logged without ``uniqueid``: re-importing them finds duplicates."""
    digest = hashlib.sha256("\x1f".join(fields).encode("utf-8", "replace")).hexdigest()
    return "csv-" + digest[:24]
