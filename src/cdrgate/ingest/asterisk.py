"""Asterisk ``cdr_csv`` (Master.csv) rows as :class:`CdrRecord`.

The default layout has 16 columns; ``loguniqueid=yes`` appends ``uniqueid`` and
``loguserfield=yes`` appends ``userfield`` (cdr.conf, section ``[csv]``). All three widths
are accepted. See docs/ingest.md for the mapping table.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from cdrgate.cdr import CdrRecord
from cdrgate.ingest.lines import seconds
from cdrgate.ingest.profile import SourceProfile
from cdrgate.timefmt import parse_pbx_time

COLUMNS = (
    "accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp",
    "lastdata", "start", "answer", "end", "duration", "billsec", "disposition", "amaflags",
    "uniqueid", "userfield",
)  # fmt: skip
BASE_WIDTH = 16
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


def is_header(fields: Sequence[str]) -> bool:
    return len(fields) > 2 and fields[0].strip() == "accountcode" and fields[1].strip() == "src"


def record_from_fields(fields: Sequence[str], profile: SourceProfile) -> CdrRecord:
    """Map one Master.csv row; ValueError says what is wrong with it."""
    if len(fields) not in (BASE_WIDTH, BASE_WIDTH + 1, BASE_WIDTH + 2):
        raise ValueError(f"expected 16 to 18 columns, found {len(fields)}")
    row = dict(zip(COLUMNS, (field.replace("\x00", "") for field in fields), strict=False))
    start = row["start"].strip()
    parse_pbx_time(start)
    disposition = row["disposition"].strip().upper()
    status = STATUS.get(disposition)
    if status is None:
        raise ValueError(f"unknown disposition {row['disposition']!r}")
    call_type, src_trunk, dst_trunk = profile.direction(
        row["src"], row["dst"], channel_peer(row["channel"]), channel_peer(row["dstchannel"])
    )
    return CdrRecord(
        callid=row.get("uniqueid", "").strip() or derived_callid(fields),
        timestart=start,
        callfrom=row["src"],
        callto=row["dst"],
        callduraction=seconds("duration", row["duration"]),
        talkduraction=seconds("billsec", row["billsec"]),
        srctrunkname=src_trunk,
        dsttrunkname=dst_trunk,
        status=status,
        type=call_type,
        pincode="",
        recording="",
        didnumber="",
        sn=profile.sn,
    )


def derived_callid(fields: Sequence[str]) -> str:
    """A stable id for rows logged without ``uniqueid``: re-importing them finds duplicates."""
    digest = hashlib.sha256("\x1f".join(fields).encode("utf-8", "replace")).hexdigest()
    return "csv-" + digest[:24]
