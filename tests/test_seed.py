"""cdrgate seed: deterministic, realistic sample data."""

from collections import Counter

from cdrgate.ingest.seeding import seed_database
from cdrgate.seed import SeedPlan, generate
from cdrgate.storage import cdrs
from cdrgate.timefmt import parse_pbx_time


def test_same_plan_same_rows_other_seed_other_rows():
    plan = SeedPlan(count=500, seed=3)
    assert list(generate(plan)) == list(generate(plan))
    assert list(generate(plan)) != list(generate(SeedPlan(count=500, seed=4)))


def test_rows_are_plausible_calls():
    records = [record for record, _ in generate(SeedPlan(count=5000, seed=1, days=60))]
    times = [parse_pbx_time(r.timestart) for r in records]
    assert times == sorted(times)
    assert all(0 <= r.talkduraction <= r.callduraction for r in records)
    assert len({(r.sn, r.callid) for r in records}) == len(records)
    kinds = Counter(r.type for r in records)
    assert set(kinds) == {"Inbound", "Outbound", "Internal"} and min(kinds.values()) > 500
    statuses = Counter(r.status for r in records)
    assert statuses["ANSWERED"] > len(records) / 2 and {"NO ANSWER", "BUSY"} <= set(statuses)
    assert all(r.srctrunkname and r.didnumber is not None for r in records if r.type == "Inbound")
    assert all(r.dsttrunkname for r in records if r.type == "Outbound")
    assert any(r.recording for r in records) and not any(
        r.recording for r in records if r.talkduraction == 0
    )
    office = sum(9 <= int(r.timestart[11:13]) < 17 for r in records)
    assert office > len(records) * 0.6


def test_seeding_twice_adds_nothing(db):
    plan = SeedPlan(count=300, seed=9)
    assert seed_database(db, plan) == 300
    assert seed_database(db, plan) == 0
    with db.read() as conn:
        assert cdrs.count(conn) == 300
