"""A signed random (get_random from the token's login address, no allowedip) answers every
download exactly as a stored one does (the same caller with allowedip naming itself): what a
Yeastar integration sees must not depend on which kind it was given."""

from __future__ import annotations

import logging

import pytest

from cdrgate.errors import Errno
from cdrgate.storage import audit
from tests.conftest import API_MD5, API_USER, Flow, make_cdr

DAY = ("2026-05-28 00:00:00", "2026-05-28 23:59:59")
OK = "text/csv; charset=utf-8"
HERE, THERE = "127.0.0.1", "127.0.0.2"
# allowedip naming get_random's own caller: the random is stored, every address rule equal.
KINDS = {"signed": {}, "stored": {"allowedip": HERE}}


@pytest.fixture
def flows(make_client, api_account, add_cdrs) -> tuple[Flow, Flow]:
    add_cdrs(make_cdr(callfrom="1000", timestart="2026-05-28 10:00:00"))
    return Flow(make_client(ip=HERE)), Flow(make_client(ip=THERE))


def _issue(flow: Flow, token: str, kind: str, ext: str = "1000", span=DAY) -> str:
    answer = flow.get_random(token, ext, *span, **KINDS[kind])
    assert answer["status"] == "Success", answer
    return str(answer["random"])


def _get(flow: Flow, token: str, random: str, ext: str = "1000", span=DAY) -> str:
    response = flow.http.get(flow.download_url(token, random, ext, *span))
    return "csv" if response.headers["content-type"] == OK else response.json()["errno"]


def _refusals(flows: tuple[Flow, Flow], kind: str, clock) -> list[str]:
    """Every refusal a download can meet, in a fixed order, and the answers it got."""
    here, there = flows
    token, other = here.token(), here.token()
    random = _issue(here, token, kind)
    answers = [
        _get(here, "not-a-token", random),  # token before anything
        _get(here, "not-a-token", "not-a-random", ext=""),  # token before parameters
        _get(here, token, random, ext=""),  # parameters before the random
        _get(here, token, random, span=(DAY[0], "2026-05-28 25:00:00")),  # time format
        _get(here, other, random),  # another token
        _get(there, other, random),  # another token, from another address
        _get(here, token, random, ext="1001"),  # another filter
        _get(there, token, random, ext="1001"),  # another filter and address
        _get(here, token, random, span=(DAY[0], "2026-05-28 23:59:58")),  # another range
        _get(there, token, random),  # only the address differs
        _get(here, token, "f" * 32),  # a random that was never issued
        _get(here, token, random),  # the download
        _get(here, token, random),  # used
        _get(there, token, random),  # used, from another address
    ]
    expired = _issue(here, token, kind)
    clock.advance(30)
    answers += [_get(there, token, expired), _get(here, token, expired)]
    return answers


def test_every_refusal_of_a_signed_random_has_the_stored_randoms_errno(flows, clock):
    signed = _refusals(flows, "signed", clock)
    clock.advance(3600)  # the first tokens' randoms are long dead; fresh tokens below
    stored = _refusals(flows, "stored", clock)
    assert signed == stored
    token_first = [Errno.TOKEN_UNKNOWN, Errno.TOKEN_UNKNOWN, Errno.PARAMETER_EMPTY]
    assert signed[:4] == [e.value for e in (*token_first, Errno.CDR_TIME_FORMAT)]
    assert signed[4:] == ["20020"] * 5 + ["20015", "20020", "csv"] + ["20020"] * 4


@pytest.mark.parametrize("kind", KINDS)
def test_a_random_is_valid_until_its_thirtieth_second_by_the_servers_clock(flows, clock, kind):
    here, _ = flows
    token = here.token()
    random = _issue(here, token, kind)
    clock.advance(29.9)
    assert _get(here, token, random) == "csv"
    late = _issue(here, token, kind)
    clock.advance(30)
    assert _get(here, token, late) == "20020"


@pytest.mark.parametrize("kind", KINDS)
def test_a_filter_spelled_otherwise_but_equal_once_normalised_downloads_for_both_kinds(flows, kind):
    """Spaces around the extensions and times, a repeated extension and ``ALL`` are the same
    filter; the order of a list is not (a list is kept as sent), for either kind."""
    here, _ = flows
    token = here.token()
    spaced = ("  2026-05-28 00:00:00", "2026-05-28 23:59:59 ")
    random = _issue(here, token, kind, ext=" 1000 , 1001,1000 ", span=spaced)
    assert _get(here, token, random, ext="1001,1000") == "20020"
    assert _get(here, token, random, ext="1000,1001") == "csv"
    every = _issue(here, token, kind, ext="ALL")
    assert _get(here, token, every, ext="all") == "csv"


@pytest.mark.parametrize("kind", KINDS)
def test_a_random_sent_upper_cased_or_padded_or_percent_encoded_is_the_same_random(flows, kind):
    here, _ = flows
    token = here.token()
    random = _issue(here, token, kind)
    encoded = "".join(f"%{ord(c):02X}" for c in random.upper())
    assert _get(here, token, f"%20{encoded}%20") == "csv"
    assert _get(here, token, random) == "20020"


@pytest.mark.parametrize("kind", KINDS)
def test_a_login_over_ipv4_mapped_ipv6_is_the_same_address_for_both_kinds(
    make_client, api_account, add_cdrs, db, kind
):
    add_cdrs(make_cdr(callfrom="1000", timestart="2026-05-28 10:00:00"))
    mapped, plain = Flow(make_client(ip=f"::ffff:{HERE}")), Flow(make_client(ip=HERE))
    token = mapped.token()
    random = _issue(plain, token, kind)
    assert _get(mapped, token, random) == "csv"


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_signed_randoms_address(
    make_client, api_account, add_cdrs, db
):
    add_cdrs(make_cdr(callfrom="1000", timestart="2026-05-28 10:00:00"))
    proxy = make_client(ip=HERE, trusted_proxies=(HERE,))
    client, neighbour = ({"X-Forwarded-For": ip} for ip in ("203.0.113.7", "203.0.113.8"))
    body = {"username": API_USER, "password": API_MD5, "port": "8260"}
    token = proxy.post("/api/v1.1.0/login", json=body, headers=client).json()["token"]

    def issue() -> str:
        body = {"extid": "1000", "starttime": DAY[0], "endtime": DAY[1]}
        params = {"token": token}
        answer = proxy.post("/api/v1.1.0/cdr/get_random", params=params, json=body, headers=client)
        return str(answer.json()["random"])

    def get(random: str, headers: dict[str, str]) -> str:
        response = proxy.get(Flow(proxy).download_url(token, random, "1000", *DAY), headers=headers)
        return "csv" if response.headers["content-type"] == OK else response.json()["errno"]

    random = issue()
    with db.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM cdr_random").scalar_one() == 0
    assert get(random, neighbour) == "20015"  # the proxy's own address is not the client's
    assert get(random, {}) == "20015"
    assert get(random, client) == "csv"


def test_a_used_random_that_has_since_expired_is_refused_as_used_for_both_kinds(
    flows, clock, caplog
):
    """The errno is 20020 either way; the rule the log names (DEBUG) is the same too."""
    caplog.set_level(logging.DEBUG, logger="cdrgate.api")
    here, _ = flows
    token = here.token()
    reasons = {}
    for kind in KINDS:
        random = _issue(here, token, kind)
        assert _get(here, token, random) == "csv"
        clock.advance(30)
        caplog.clear()
        assert _get(here, token, random) == Errno.CDR_RANDOM_INVALID.value
        reasons[kind] = [r.getMessage() for r in caplog.records if "refused:" in r.getMessage()]
    assert reasons["signed"] == reasons["stored"]
    assert reasons["signed"][0].endswith("refused: random already used (one download each)")


def test_each_download_of_a_signed_random_is_audited_and_it_and_the_key_are_never_in_clear(
    flows, clock, db, caplog
):
    caplog.set_level(logging.DEBUG)
    here, there = flows
    token = here.token()
    random = _issue(here, token, "signed")
    expired = _issue(here, token, "signed")
    answers = [
        _get(there, token, random),
        _get(here, token, random, ext="1001"),
        _get(here, token, random),
        _get(here, token, random),
    ]
    clock.advance(30)
    answers.append(_get(here, token, expired))
    assert answers == ["20015", "20020", "csv", "20020", "20020"]
    with db.read() as conn:
        records = [dict(row._mapping) for row in reversed(audit.query(conn, limit=100))]
    assert [(r["client_ip"], r["outcome"]) for r in records] == [
        (THERE, "failed"), (HERE, "failed"), (HERE, "ok"), (HERE, "failed"), (HERE, "failed"),
    ]  # fmt: skip
    with db.read() as conn:
        key = conn.exec_driver_sql("SELECT value FROM server_key").scalar_one()
    # The server's own records (httpx's are the test client's: it logs the link it fetched).
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))
    for secret in (random, expired):
        assert all(secret not in repr(r) for r in records)
        assert secret not in logged
    assert key not in logged and key[:15] not in logged


@pytest.mark.parametrize("kind", KINDS)
def test_two_randoms_asked_in_a_row_for_one_filter_each_download_once(flows, kind):
    here, _ = flows
    token = here.token()
    first, second = _issue(here, token, kind), _issue(here, token, kind)
    assert first != second
    assert [_get(here, token, r) for r in (second, first, second, first)] == [
        "csv", "csv", "20020", "20020",
    ]  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_a_random_asked_for_by_extid_downloads_through_the_v2_link_by_number(flows, kind):
    """The API version is not part of what a random is bound to, for either kind."""
    here, _ = flows
    token = here.token()
    random = _issue(here, token, kind)
    assert _get(Flow(here.http, version="v2.0.0"), token, random) == "csv"
