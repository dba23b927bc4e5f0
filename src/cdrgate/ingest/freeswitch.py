"""FreeSWITCH ``mod_cdr_csv`` rows (the default ``example`` template) as :class:`CdrRecord`.

The template writes 15 quoted columns (``COLUMNS``). It carries no disposition, so the
status comes from ``billsec`` and ``hangup_cause``; see docs/ingest.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from cdrgate.cdr import CdrRecord
from cdrgate.ingest.asterisk import derived_callid
from cdrgate.ingest.lines import seconds
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


def is_header(fields: Sequence[str]) -> bool:
    return len(fields) > 2 and fields[0].strip() == "caller_id_name"


def status_from(billsec: int, answer_stamp: str, hangup_cause: str) -> str:
    if billsec > 0 or answer_stamp.strip():
        return "ANSWERED"
    cause = hangup_cause.strip().upper()
    if cause in BUSY_CAUSES:
        return "BUSY"
    if cause in NO_ANSWER_CAUSES:
        return "NO ANSWER"
    return "FAILED"


def record_from_fields(fields: Sequence[str], profile: SourceProfile) -> CdrRecord:
    """Map one mod_cdr_csv row; ValueError says what is wrong with it."""
    if len(fields) != len(COLUMNS):
        raise ValueError(f"expected {len(COLUMNS)} columns, found {len(fields)}")
    row = dict(zip(COLUMNS, (field.replace("\x00", "") for field in fields), strict=True))
    start = row["start_stamp"].strip()
    parse_pbx_time(start)
    billsec = seconds("billsec", row["billsec"])
    caller, callee = row["caller_id_number"], row["destination_number"]
    call_type, src_trunk, dst_trunk = profile.direction(caller, callee)
    return CdrRecord(
        callid=row["uuid"].strip() or derived_callid(fields),
        timestart=start,
        callfrom=caller,
        callto=callee,
        callduraction=seconds("duration", row["duration"]),
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
