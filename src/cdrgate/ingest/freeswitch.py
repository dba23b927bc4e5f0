"""FreeSWITCH ``mod_cdr_csv`` rows (the default ``example`` template) as :class:`CdrRecord`.

The template writes 15 quoted columns (``COLUMNS``). It carries no disposition, so the
status comes from ``billsec`` and ``hangup_cause``; see docs/ingest.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from cdrgate.cdr import CdrRecord, parse_seconds, row_without_nul
from cdrgate.ingest.asterisk import derived_callid
from cdrgate.ingest.profile import SourceProfile
from cdrgate.timefmt import parse_pbx_time

COLUMNS = (
    "caller_id_name", "caller_id_number", "destination_number", "context", "start_stamp",
    "answer_stamp", "end_stamp", "duration", "billsec", "hangup_cause", "uuid", "bleg_uuid",
    "accountcode", "read_codec", "write_codec",
)  # fmt: skip
BUSY_CAUSES = frozenset({"USER_BUSY"})
NO_ANSWER_CAUSES = frozenset(
    {"NO_ANSWER", "NO_USER_RESPONSE", "ORIGINATOR_CANCEL", "ALLOTTED_TIMEOUT", "NORMAL_CLEARING"}
)


def status_from(billsec: int, answer_stamp: str, hangup_cause: str) -> str:
    if billsec > 0 or answer_stamp.strip():
        return "ANSWERED"
    cause = hangup_cause.strip().upper()
    if cause in BUSY_CAUSES:
        return "BUSY"
    if cause in NO_ANSWER_CAUSES:
        return "NO ANSWER"
    return "FAILED"


def record_from_fields(fields: Sequence[str], profile: SourceProfile) -> tuple[CdrRecord, int]:
    """Map one mod_cdr_csv row (and its start as wall-clock seconds); ValueError says what
    is wrong with it."""
    if len(fields) != len(COLUMNS):
        raise ValueError(f"expected {len(COLUMNS)} columns, found {len(fields)}")
    row = dict(zip(COLUMNS, row_without_nul(fields), strict=True))
    start = row["start_stamp"].strip()
    ts = parse_pbx_time(start)
    billsec = parse_seconds("billsec", row["billsec"])
    caller, callee = row["caller_id_number"], row["destination_number"]
    call_type, src_trunk, dst_trunk = profile.direction(caller, callee)
    record = CdrRecord(
        callid=row["uuid"].strip() or derived_callid(fields),
        timestart=start,
        callfrom=caller,
        callto=callee,
        callduraction=parse_seconds("duration", row["duration"]),
        talkduraction=billsec,
        srctrunkname=src_trunk,
        dsttrunkname=dst_trunk,
        status=status_from(billsec, row["answer_stamp"], row["hangup_cause"]),
        type=call_type,
        pincode="",
        recording="",
        didnumber="",
        sn=profile.sn,
    )
    return record, ts


def looks_like_row(fields: Sequence[str]) -> bool:
    """A headerless mod_cdr_csv row, recognised for ``import`` hints."""
    if len(fields) != len(COLUMNS):
        return False
    try:
        parse_pbx_time(fields[4])
    except ValueError:
        return False
    return True
