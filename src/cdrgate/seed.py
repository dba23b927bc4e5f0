"""Realistic, deterministic sample CDRs: shared by ``cdrgate seed``, the demo, tests and benches.

The same ``(count, seed, start, days, extensions)`` always gives the same rows, so a seeded
database is reproducible and re-seeding adds nothing (same serial number and call ids).

The rows are made by the database itself (``storage/seeded.py``: one INSERT ... SELECT per
chunk, no row ever crosses into Python), from this module's plan: what a call looks like
(the weights below) and when calls happen (``slots``). ``generate`` runs the same SELECT on
an in-memory SQLite database, for callers that want the rows rather than a seeded store.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import create_engine

from cdrgate.cdr import CdrRecord
from cdrgate.timefmt import format_pbx_time, parse_pbx_time

TRUNKS = ("SIP-Provider", "Telekom-PRI", "MEO", "GSM-Gateway")
DIDS = ("0215550100", "0215550101", "0215550150", "0800123456", "")
EXTERNAL_PREFIXES = ("0041", "+4179", "0044", "+33", "089", "0215")
# (status, percent) per call type; voicemail only where a mailbox can answer.
STATUSES = {
    "Inbound": (("ANSWERED", 62), ("NO ANSWER", 20), ("BUSY", 6), ("VOICEMAIL", 9), ("FAILED", 3)),
    "Outbound": (("ANSWERED", 66), ("NO ANSWER", 18), ("BUSY", 9), ("FAILED", 7)),
    "Internal": (("ANSWERED", 72), ("NO ANSWER", 16), ("BUSY", 6), ("VOICEMAIL", 6)),
}
TYPES = (("Inbound", 42), ("Outbound", 36), ("Internal", 22))
MEAN_TALK_S = 170  # answered calls: exponential talk time, plus 3 s
RECORDED_TENTHS = 3  # of answered calls
PINCODE_PERCENT = 2  # of outbound calls
# Share of calls by hour of day on a weekday: office hours dominate, nights are quiet.
HOUR_WEIGHTS = (1, 1, 1, 1, 1, 2, 4, 10, 30, 42, 44, 40, 26, 30, 40, 42, 38, 28, 12, 6, 4, 3, 2, 1)
WEEKEND_PERCENT = 15  # of a weekday's calls, hour by hour


@dataclass(frozen=True)
class SeedPlan:
    count: int
    seed: int = 1
    start: str = "2026-01-01 00:00:00"
    days: int = 365
    extensions: int = 50
    first_extension: int = 1000

    @property
    def serial(self) -> str:
        return f"3693{random.Random(self.seed).randrange(10**8):08d}"


@dataclass(frozen=True)
class Slot:
    """One hour of the plan and its share of the calls: rows ``first_seq`` to
    ``first_seq + calls - 1`` (1-based, in time order) start in this hour."""

    first_seq: int
    calls: int
    ts: int  # the hour's first second (wall-clock seconds)
    clock: str  # "yyyy-mm-dd hh:", to which the row appends "mm:ss"


def slots(plan: SeedPlan) -> list[Slot]:
    """The hours that get calls, in time order.

    Each hour gets its share of ``plan.count`` by weight, rounded so that the shares add up
    exactly: row ``seq`` falls in the hour where the cumulative weight passes
    ``seq / count`` of the total. Times are then in order by construction (no sort), and a
    chunk of hours is a chunk of rows.
    """
    start_ts = parse_pbx_time(plan.start)
    weights: list[int] = []
    for day in range(plan.days):
        weekday = (start_ts // 86400 + day + 3) % 7  # 1970-01-01 was a Thursday (3)
        percent = WEEKEND_PERCENT if weekday >= 5 else 100
        weights.extend(weight * percent for weight in HOUR_WEIGHTS)
    total = sum(weights)
    found: list[Slot] = []
    reached = cumulative = 0
    for hour, weight in enumerate(weights):
        cumulative += weight
        upto = plan.count * cumulative // total
        if upto > reached:
            ts = start_ts + hour * 3600
            found.append(Slot(reached + 1, upto - reached, ts, _hour_clock(ts)))
            reached = upto
    return found


def _hour_clock(ts: int) -> str:
    """``format_pbx_time(ts)[:14]`` ("yyyy-mm-dd hh:"), the day's text made once a day: a
    year's 8,760 hours took ~0.04 s of the seed's start in ``format_pbx_time``."""
    return f"{_day_text(ts // 86400)} {ts % 86400 // 3600:02d}:"


@functools.cache
def _day_text(day: int) -> str:
    return format_pbx_time(day * 86400)[:10]


def generate(plan: SeedPlan) -> Iterator[tuple[CdrRecord, str]]:
    """Yield ``(record, csv_line)`` pairs in time order: the rows ``cdrgate seed`` stores."""
    from cdrgate.storage import seeded  # storage imports this module's plan

    engine = create_engine("sqlite://")
    try:
        with engine.connect() as conn:
            for row in seeded.select_rows(conn, plan, slots(plan)):
                record = CdrRecord._make((*row[:4], int(row[4]), int(row[5]), *row[6:14]))
                yield record, row[14]
    finally:
        engine.dispose()
