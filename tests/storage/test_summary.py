"""cdr_summary gives the same statistics as the rows, whatever was stored, skipped or pruned."""

from __future__ import annotations

from dataclasses import make_dataclass, replace
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdrgate import scope
from cdrgate.cdr import CdrRecord
from cdrgate.ingest import seeding
from cdrgate.ingest.seeding import seed_database
from cdrgate.ingest.store import store_records
from cdrgate.seed import SeedPlan
from cdrgate.services.query import STATUSES, TYPES
from cdrgate.services.retention import RetentionPolicy, prune
from cdrgate.storage import query as q
from cdrgate.storage.db import Database
from cdrgate.timefmt import format_pbx_time, parse_pbx_time
from tests.conftest import make_cdr

JAN = parse_pbx_time("2026-01-01 00:00:00")
HOUR = 3600
DAY = 86_400
# Four months of 2026, and a few hours either side of the epoch (where integer division
# truncates towards zero, so hour bounds there are not whole hours of the rows).
times = st.one_of(
    st.integers(JAN, JAN + 120 * DAY - 1),
    st.integers(-3 * HOUR, 3 * HOUR),
)
cdrs = st.builds(
    lambda callid, ts, status, kind, talk, extra: make_cdr(
        callid=f"17800.{callid}",
        timestart=format_pbx_time(ts),
        status=status,
        type=kind,
        talkduraction=talk,
        callduraction=talk + extra,
    ),
    callid=st.integers(0, 60),  # a small pool: some records are duplicates, skipped
    ts=times,
    status=st.sampled_from(STATUSES),
    kind=st.sampled_from(TYPES),
    talk=st.integers(0, 5000),
    extra=st.integers(0, 60),
)
bounds = st.one_of(
    st.none(),
    st.integers(JAN // HOUR, (JAN + 121 * DAY) // HOUR).map(lambda h: h * HOUR),
    st.integers(-4 * HOUR, JAN + 121 * DAY),  # not whole hours: the raw rows answer
)
filters = st.builds(
    q.Filters,
    from_ts=bounds,
    until_ts=bounds,
    statuses=st.lists(st.sampled_from(STATUSES), unique=True).map(tuple),
    types=st.lists(st.sampled_from(TYPES), unique=True).map(tuple),
)
groups = st.sampled_from(get_args(q.Group))
policies = st.one_of(
    st.builds(RetentionPolicy, max_records=st.integers(1, 80)),
    st.builds(RetentionPolicy, max_age_days=st.integers(1, 150)),
)
NOW = JAN + 130 * DAY
SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _fresh(db: Database, records: list[CdrRecord]) -> None:
    with db.write() as conn:
        conn.exec_driver_sql("DELETE FROM cdr")
        conn.exec_driver_sql("DELETE FROM cdr_summary")
    # Two transactions, the second repeating part of the first: only new rows count.
    store_records(db, records[: len(records) // 2 + 1])
    store_records(db, records)


def _both(db: Database, f: q.Filters, group: q.Group) -> tuple[list[Any], list[Any]]:
    with db.read() as conn:
        raw = [tuple(int(v) if i else v for i, v in enumerate(row))
               for row in conn.execute(q.stats_select(f, group))]  # fmt: skip
        answer = q.read_stats(conn, f, group)
    return raw, answer


@SETTINGS
@given(records=st.lists(cdrs, max_size=80), asked=st.lists(st.tuples(filters, groups), max_size=6))
def test_statistics_from_the_summary_equal_those_from_the_rows(
    db: Database, records: list[CdrRecord], asked: list[tuple[q.Filters, q.Group]]
):
    _fresh(db, records)
    for f, group in asked:
        raw, answer = _both(db, f, group)
        assert answer == raw, (f, group)


@SETTINGS
@given(records=st.lists(cdrs, max_size=80), policy=policies, f=filters, group=groups)
def test_statistics_from_the_summary_equal_those_from_the_rows_after_retention(
    db: Database, records: list[CdrRecord], policy: RetentionPolicy, f: q.Filters, group: q.Group
):
    _fresh(db, records)
    prune(db, policy, NOW)
    raw, answer = _both(db, f, group)
    assert answer == raw
    everything = q.Filters()
    assert _both(db, everything, "type")[1] == _both(db, everything, "type")[0]


@pytest.mark.parametrize(
    "how", ["empty store", "empty store in chunks", "in commits"], ids=lambda how: how
)
def test_statistics_from_the_summary_equal_those_from_the_rows_after_seeding(
    db: Database, monkeypatch: pytest.MonkeyPatch, how: str
):
    if how != "empty store":  # small chunks: on SQLite, an empty store's come from a helper
        monkeypatch.setattr(seeding, "SEED_BATCH", 100)
    if how == "in commits":  # a store that holds rows already: a commit every few hundred rows
        store_records(db, [make_cdr(callid="17800.1", timestart="2026-01-05 10:00:00")])
        monkeypatch.setattr(seeding, "SEED_COMMIT_ROWS", 300)
    plan = SeedPlan(count=2000, seed=4, start="2026-01-01 00:00:00", days=120)
    seed_database(db, plan)
    assert seed_database(db, plan) == 0  # again: nothing new, so nothing counted twice
    asked = (q.Filters(), q.Filters(from_ts=JAN + 7 * DAY, until_ts=JAN + 40 * DAY))
    for f in (*asked, q.Filters(statuses=("ANSWERED", "VOICEMAIL"), types=("Inbound",))):
        for group in get_args(q.Group):
            raw, answer = _both(db, f, group)
            assert answer == raw, (f, group)


def test_a_year_per_day_with_whole_hour_bounds_is_answered_by_the_summary():
    year = q.Filters(from_ts=JAN, until_ts=JAN + 365 * DAY, statuses=("ANSWERED",))
    assert q.summary_answers(year, "day")
    assert not q.summary_answers(year, "extension")
    assert not q.summary_answers(q.Filters(from_ts=JAN + 1), "day")
    assert not q.summary_answers(q.Filters(numbers=("1000",)), "day")


def test_a_scoped_accounts_statistics_are_read_from_the_rows():
    year = q.Filters(from_ts=JAN, until_ts=JAN + 365 * DAY)
    scoped = replace(year, scope=scope.parse("1000-1009"))
    assert q.summary_answers(year, "day")
    assert not q.summary_answers(scoped, "day")


def test_a_filter_the_summary_does_not_know_sends_statistics_to_the_rows():
    # As when a new Filters field is added without teaching the summary about it: set, it
    # must not be ignored.
    scoped = make_dataclass("Scoped", [("scope", tuple, ())], bases=(q.Filters,), frozen=True)
    assert q.summary_answers(scoped(from_ts=JAN), "day")
    assert not q.summary_answers(scoped(from_ts=JAN, scope=("1000",)), "day")
