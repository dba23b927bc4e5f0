"""Sessions as a PBX enforces them: expiring randoms and tokens, heartbeats, lockouts."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from cdrgate.client import AuthenticationFailed, LockedOut, PbxError
from tests.client.helpers import endpoint_of
from tests.conftest import make_cdr

DAY = ("2026-05-28 00:00:00", "2026-05-28 23:59:59")


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_expired_random_is_retried_with_a_fresh_one(make_sdk, add_cdrs, clock):
    add_cdrs(make_cdr())
    expired: list[bool] = []

    def expire_first_random(request, _response):
        # The server's clock jumps past the 30 s random lifetime once, right after issuing it.
        if endpoint_of(request) == "cdr/get_random" and not expired:
            expired.append(True)
            clock.advance(31)

    client, recorder = make_sdk(after=expire_first_random)
    assert [c.callid for c in client.iter_cdrs("all", *DAY)] == ["1780000000.1"]
    assert recorder.calls == ["login"] + ["cdr/get_random", "cdr/download"] * 2


def test_a_random_that_keeps_expiring_gives_up_with_20020(make_sdk, add_cdrs, clock):
    add_cdrs(make_cdr())

    def always_expire(request, _response):
        if endpoint_of(request) == "cdr/get_random":
            clock.advance(31)

    client, recorder = make_sdk(after=always_expire)
    with pytest.raises(PbxError) as caught:
        list(client.iter_cdrs("all", *DAY))
    assert caught.value.errno == "20020"
    assert recorder.calls.count("cdr/get_random") == 3


def test_an_expired_token_is_replaced_by_one_new_login(make_sdk, add_cdrs, clock):
    add_cdrs(make_cdr())
    client, recorder = make_sdk()
    assert len(list(client.iter_cdrs("all", *DAY))) == 1
    clock.advance(31 * 60)  # the server forgets the idle token

    assert len(list(client.iter_cdrs("all", *DAY))) == 1
    assert recorder.calls.count("login") == 2


def test_an_idle_session_is_kept_alive_with_a_heartbeat(make_sdk, add_cdrs, clock):
    add_cdrs(make_cdr())
    local = FakeMonotonic()
    client, recorder = make_sdk(clock=local)
    list(client.iter_cdrs("all", *DAY))
    local.now += 21 * 60
    clock.advance(21 * 60)

    list(client.iter_cdrs("all", *DAY))
    assert recorder.calls.count("login") == 1
    assert recorder.calls.count("heartbeat") == 1
    assert recorder.calls.index("heartbeat") == 3  # before the second get_random


def test_a_wrong_password_is_not_retried(make_sdk):
    client, recorder = make_sdk(password="wrong password")
    with pytest.raises(AuthenticationFailed, match="invalid username or password"):
        list(client.iter_cdrs("all", *DAY))
    assert recorder.calls == ["login"]


def test_a_lockout_stops_all_contact_and_says_when_to_retry(make_sdk):
    client, recorder = make_sdk(password="wrong password", settings={"lockout_failures": 2})
    for _ in range(2):
        with pytest.raises(AuthenticationFailed):
            client.login()
    with pytest.raises(LockedOut) as caught:
        client.login()
    before = datetime.now()
    assert caught.value.errno == "20002"
    assert before < caught.value.retry_at <= before + timedelta(minutes=10)
    assert "retry after" in str(caught.value)

    with pytest.raises(LockedOut):
        list(client.iter_cdrs("all", *DAY))
    assert recorder.calls == ["login"] * 3  # the locked client did not call again


def test_the_right_password_from_a_locked_address_is_refused_too(make_sdk):
    bad, _ = make_sdk(password="wrong password", settings={"lockout_failures": 1})
    with pytest.raises(AuthenticationFailed):
        bad.login()
    good, _ = make_sdk()
    with pytest.raises(LockedOut):
        good.login()


def test_close_logs_out(make_sdk, add_cdrs):
    client, recorder = make_sdk()
    client.login()
    client.close()
    assert recorder.calls == ["login", "logout"]
