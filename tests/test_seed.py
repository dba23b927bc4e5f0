"""cdrgate seed: deterministic, realistic sample data."""

from collections import Counter

import pytest

from cdrgate.ingest import seeding
from cdrgate.ingest.seeding import seed_database
from cdrgate.seed import SeedPlan, generate, slots
from cdrgate.storage import cdrs
from cdrgate.timefmt import format_pbx_time, parse_pbx_time


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


def test_seeded_lines_are_the_records_as_the_download_writes_them():
    # The database renders each line itself, without quoting: true only while no seeded
    # value holds a comma, quote or newline.
    pairs = list(generate(SeedPlan(count=5000, seed=2, days=30, extensions=7)))
    assert all(line == record.csv_line() for record, line in pairs)
    assert any(record.pincode for record, _ in pairs)
    assert any(record.didnumber for record, _ in pairs)


def test_rows_stay_inside_the_plan():
    plan = SeedPlan(count=3000, seed=5, start="2026-02-01 00:00:00", days=10, extensions=7)
    records = [record for record, _ in generate(plan)]
    assert len(records) == 3000
    start = parse_pbx_time(plan.start)
    assert all(start <= parse_pbx_time(r.timestart) < start + 10 * 86400 for r in records)
    extensions = {str(1000 + i) for i in range(7)}
    assert all(
        r.callto in extensions if r.type == "Inbound" else r.callfrom in extensions for r in records
    )
    assert {r.callto for r in records if r.type == "Internal"} == extensions
    assert all(r.sn == plan.serial for r in records)


def test_each_hour_names_its_clock_as_format_pbx_time_does():
    # The hours' "yyyy-mm-dd hh:" texts are made a day at a time; a start off the hour and a
    # year's end are crossed too.
    plan = SeedPlan(count=50_000, start="2026-12-30 21:37:12", days=3)
    hours = slots(plan)
    assert hours[0].clock == "2026-12-30 21:" and hours[-1].clock.startswith("2027-01-02 ")
    assert all(hour.clock == format_pbx_time(hour.ts)[:14] for hour in hours)


def test_a_recording_is_named_as_the_pbx_names_it():
    records = [record for record, _ in generate(SeedPlan(count=2000, seed=7, days=30))]
    recorded = [r for r in records if r.recording]
    assert recorded and all(r.status == "ANSWERED" for r in recorded)
    for r in recorded:
        stamp = r.timestart.replace("-", "").replace(" ", "").replace(":", "")
        assert r.recording == f"{stamp}-{r.callid}-{r.callfrom}-{r.callto}-{r.type}.wav"


def test_a_seeded_store_holds_the_generated_rows(db):
    # On PostgreSQL too: the same seed gives the same rows on both engines.
    plan = SeedPlan(count=1500, seed=11, days=20)
    assert seed_database(db, plan) == 1500
    with db.read() as conn:
        stored = conn.exec_driver_sql("SELECT ts, line FROM cdr ORDER BY id").all()
    generated = list(generate(plan))
    assert [line for _, line in stored] == [line for _, line in generated]
    assert [ts for ts, _ in stored] == [parse_pbx_time(r.timestart) for r, _ in generated]


def test_seeded_rows_land_in_their_month_partitions(db, monkeypatch):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("month partitions are PostgreSQL's")
    # Many chunks over four months: a partition made after the transaction touched cdr would
    # wait out its lock timeout, and the rows would go to cdr_default.
    monkeypatch.setattr(seeding, "SEED_BATCH", 200)
    assert seed_database(db, SeedPlan(count=2000, seed=3, days=120)) == 2000
    with db.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM cdr_default").scalar_one() == 0
