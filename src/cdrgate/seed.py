"""Realistic, deterministic sample CDRs: shared by ``cdrgate seed``, the demo, tests and benches.

The same ``(count, seed, start, days, extensions)`` always gives the same rows, so a seeded
database is reproducible and re-seeding adds nothing (same serial number and call ids).
"""

from __future__ import annotations

import random
from bisect import bisect_right as bisect
from collections.abc import Iterator
from dataclasses import dataclass

from cdrgate.cdr import CdrRecord, render_csv_line
from cdrgate.timefmt import format_pbx_time, parse_pbx_time

TRUNKS = ("SIP-Provider", "Telekom-PRI", "MEO", "GSM-Gateway")
DIDS = ("0215550100", "0215550101", "0215550150", "0800123456", "")
EXTERNAL_PREFIXES = ("0041", "+4179", "0044", "+33", "089", "0215")
# (status, weight) per call type; voicemail only where a mailbox can answer.
STATUSES = {
    "Inbound": (("ANSWERED", 62), ("NO ANSWER", 20), ("BUSY", 6), ("VOICEMAIL", 9), ("FAILED", 3)),
    "Outbound": (("ANSWERED", 66), ("NO ANSWER", 18), ("BUSY", 9), ("FAILED", 7)),
    "Internal": (("ANSWERED", 72), ("NO ANSWER", 16), ("BUSY", 6), ("VOICEMAIL", 6)),
}
TYPES = (("Inbound", 42), ("Outbound", 36), ("Internal", 22))
# Share of calls by hour of day on a weekday: office hours dominate, nights are quiet.
HOUR_WEIGHTS = (1, 1, 1, 1, 1, 2, 4, 10, 30, 42, 44, 40, 26, 30, 40, 42, 38, 28, 12, 6, 4, 3, 2, 1)
WEEKEND_FACTOR = 0.15


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


def _weighted(pairs: tuple[tuple[str, int], ...]) -> tuple[list[str], list[int]]:
    values = [value for value, _ in pairs]
    cumulative, total = [], 0
    for _, weight in pairs:
        total += weight
        cumulative.append(total)
    return values, cumulative


def _slot_weights(plan: SeedPlan, start_ts: int) -> list[float]:
    weights: list[float] = []
    for day in range(plan.days):
        weekday = (start_ts // 86400 + day + 3) % 7  # 1970-01-01 was a Thursday (3)
        factor = WEEKEND_FACTOR if weekday >= 5 else 1.0
        weights.extend(w * factor for w in HOUR_WEIGHTS)
    return weights


def generate(plan: SeedPlan) -> Iterator[tuple[CdrRecord, str]]:
    """Yield ``(record, csv_line)`` pairs in time order."""
    for _ts, record, line in generate_timed(plan):
        yield record, line


def generate_timed(plan: SeedPlan) -> Iterator[tuple[int, CdrRecord, str]]:
    """Yield ``(ts, record, csv_line)`` in time order; ``ts`` is ``timestart`` as wall-clock
    seconds, so bulk loaders need not parse it back.

    This is the hot loop of ``cdrgate seed`` (a million rows should take seconds), hence the
    inlined weighted draws: they consume the generator exactly as ``choices(cum_weights=...)``
    would, so a seed keeps giving the same rows.
    """
    rng = random.Random(plan.seed)
    below = rng.randrange
    start_ts = parse_pbx_time(plan.start)
    slots = rng.choices(range(plan.days * 24), weights=_slot_weights(plan, start_ts), k=plan.count)
    times = sorted(start_ts + slot * 3600 + below(3600) for slot in slots)
    exts = [str(plan.first_extension + i) for i in range(plan.extensions)]
    n_exts = len(exts)
    types, type_cum = _weighted(TYPES)
    type_total, type_hi = type_cum[-1] + 0.0, len(type_cum) - 1
    status_tables = {}
    for kind, pairs in STATUSES.items():
        statuses, cum = _weighted(pairs)
        status_tables[kind] = (statuses, cum, cum[-1] + 0.0, len(cum) - 1)
    sn = plan.serial
    rand, expovariate = rng.random, rng.expovariate
    day_text: dict[int, str] = {}

    for seq, ts in enumerate(times, start=1):
        kind = types[bisect(type_cum, rand() * type_total, 0, type_hi)]
        statuses, cum, total, hi = status_tables[kind]
        status = statuses[bisect(cum, rand() * total, 0, hi)]
        ext = exts[below(n_exts)]
        src_trunk = dst_trunk = did = ""
        if kind == "Inbound":
            callfrom = EXTERNAL_PREFIXES[below(6)] + str(10**6 + below(9 * 10**6))
            callto = ext
            src_trunk = TRUNKS[below(len(TRUNKS))]
            did = DIDS[below(len(DIDS))]
        elif kind == "Outbound":
            callfrom = ext
            callto = EXTERNAL_PREFIXES[below(6)] + str(10**6 + below(9 * 10**6))
            dst_trunk = TRUNKS[below(len(TRUNKS))]
        else:
            callfrom = ext
            callto = exts[below(n_exts)]
        ring = 2 + below(33)
        if status == "ANSWERED":
            talk = int(expovariate(1 / 170)) + 3
        elif status == "VOICEMAIL":
            talk = 5 + below(55)
        else:
            talk = 0
        call = ring + talk if status != "FAILED" else below(4)
        callid = f"{ts}.{seq}"
        day, second = divmod(ts, 86400)
        date = day_text.get(day)
        if date is None:
            date = day_text[day] = format_pbx_time(day * 86400)[:11]
        timestart = date + _CLOCK[second]
        recording = ""
        if status == "ANSWERED" and rand() < 0.3:
            stamp = timestart.replace("-", "").replace(" ", "").replace(":", "")
            recording = f"{stamp}-{callid}-{callfrom}-{callto}-{kind}.wav"
        pincode = str(1000 + below(8999)) if kind == "Outbound" and rand() < 0.02 else ""
        fields = (
            callid, timestart, callfrom, callto, str(call), str(talk), src_trunk, dst_trunk,
            status, kind, pincode, recording, did, sn,
        )  # fmt: skip
        record = CdrRecord(
            callid, timestart, callfrom, callto, call, talk, src_trunk, dst_trunk,
            status, kind, pincode, recording, did, sn,
        )  # fmt: skip
        yield ts, record, render_csv_line(fields)


# "hh:mm:ss" for every second of a day: a lookup is far cheaper than strftime per row.
_CLOCK = tuple(f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60))
