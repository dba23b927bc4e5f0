"""Scopes: the spec's rules, its canonical form, and SQL that agrees with ``contains``."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from cdrgate import scope
from cdrgate.ingest.store import store_records
from cdrgate.storage.tables import cdr
from tests.conftest import make_cdr


def test_all_is_no_scope_in_any_case():
    assert scope.parse("all") is None
    assert scope.parse(" ALL ") is None
    assert scope.render(None) == "all"


def test_ranges_match_numbers_of_their_own_length_only():
    limit = scope.parse("1000-1099,2001")
    assert limit is not None
    assert [n for n in ("1000", "1050", "1099", "2001") if not limit.contains(n)] == []
    assert [
        n for n in ("999", "1100", "105", "10500", "2002", "0105", "") if limit.contains(n)
    ] == []


def test_leading_zeros_are_part_of_an_extension():
    limit = scope.parse("0100-0199")
    assert limit is not None and limit.contains("0150") and not limit.contains("150")


def test_render_is_canonical_and_parses_back_to_the_same_scope():
    limit = scope.parse(" 2001, 1000-1099 ,1050,300,2001,5-5 ")
    assert limit is not None
    assert limit.render() == "5,300,1000-1099,2001"  # 1050 lies in 1000-1099
    assert scope.parse(limit.render()) == limit


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("1099-1000", "reversed"),
        ("100-1099", "same number of digits"),
        ("abc", "1 to 20 digits"),
        ("1000-", "1 to 20 digits"),
        ("+351", "1 to 20 digits"),
        ("1000,,2001", "empty item"),
        ("", "no extension"),
        (" , ", "no extension"),
        ("1" * 21, "1 to 20 digits"),
        ("1-2-3", "1 to 20 digits"),
    ],
)
def test_bad_specs_are_refused_with_a_reason(spec, says):
    with pytest.raises(scope.ScopeError, match=says):
        scope.parse(spec)


NUMBERS = ["1", "99", "100", "105", "999", "1000", "1050", "1099", "1100", "2001", "2002",
           "0150", "10500", "0215550100", "anonymous", ""]  # fmt: skip


@pytest.mark.parametrize("spec", ["1000-1099,2001", "100-199,0100-0199", "1,99,10000-10999"])
def test_the_sql_predicate_agrees_with_contains(db, spec):
    limit = scope.parse(spec)
    assert limit is not None
    store_records(db, [
        make_cdr(callid=f"c{n}", callfrom=number, callto="0", type="Outbound")
        for n, number in enumerate(NUMBERS)
    ])  # fmt: skip
    with db.read() as conn:
        stmt = select(cdr.c.callfrom).where(limit.predicate(cdr.c.callfrom, cdr.c.callto))
        found = set(conn.execute(stmt).scalars())
    assert found == {number for number in NUMBERS if limit.contains(number)}
