"""POST login: tokens, credential errors and the per-IP lockout."""

from __future__ import annotations

import hashlib
import re
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import insert

from cdrgate.services.auth import set_api_user
from cdrgate.storage.tables import login_guard
from tests.conftest import API_MD5, API_USER, Flow

WRONG_MD5 = hashlib.md5(b"wrong password").hexdigest()


def test_login_returns_32_lowercase_hex_token(flow):
    answer = flow.login()
    assert answer["status"] == "Success"
    assert re.fullmatch(r"[0-9a-f]{32}", answer["token"])


def test_each_login_gets_a_new_token_and_both_stay_valid(flow):
    first, second = flow.token(), flow.token()
    assert first != second
    for token in (first, second):
        assert flow.get_random(token)["status"] == "Success"


def test_wrong_password_is_20003(flow):
    assert flow.login(password=WRONG_MD5) == {"status": "Failed", "errno": "20003"}


def test_unknown_user_is_20003(flow):
    assert flow.login(username="nobody") == {"status": "Failed", "errno": "20003"}


def test_plain_password_instead_of_md5_is_refused(flow):
    from tests.conftest import API_PASSWORD

    assert flow.login(password=API_PASSWORD)["errno"] == "20003"


def test_upper_case_md5_is_accepted(flow):
    assert flow.login(password=API_MD5.upper())["status"] == "Success"


def test_missing_username_or_password_is_10004(client):
    for body in ({"password": API_MD5}, {"username": API_USER}, {"username": "", "password": ""}):
        assert client.post("/api/v1.1.0/login", json=body).json()["errno"] == "10004"


def test_numbers_where_strings_are_documented(client):
    body = {
        "username": API_USER,
        "password": API_MD5,
        "port": 8260,
        "urltag": 1,
        "version": "1.0.2",
    }
    assert client.post("/api/v1.1.0/login", json=body).json()["status"] == "Success"


def test_json_sent_as_text_plain_is_parsed(client):
    body = f'{{"username":"{API_USER}","password":"{API_MD5}","port":"8260"}}'
    answer = client.post(
        "/api/v1.1.0/login", content=body, headers={"Content-Type": "text/plain"}
    ).json()
    assert answer["status"] == "Success"


def test_five_failures_lock_the_ip_even_for_the_right_password(flow):
    answers = [flow.login(password=WRONG_MD5)["errno"] for _ in range(5)]
    assert answers == ["20003"] * 5
    assert flow.login() == {"status": "Failed", "errno": "20002"}


def test_lockout_lasts_ten_minutes(flow, clock):
    for _ in range(5):
        flow.login(password=WRONG_MD5)
    clock.advance(599)
    assert flow.login()["errno"] == "20002"
    clock.advance(2)
    assert flow.login()["status"] == "Success"


def test_lockout_is_per_client_ip(make_client, api_account):
    attacker, app_server = Flow(make_client("127.0.0.2")), Flow(make_client("127.0.0.3"))
    for _ in range(6):
        attacker.login(password=WRONG_MD5)
    assert attacker.login()["errno"] == "20002"
    assert app_server.login()["status"] == "Success"


def test_a_success_resets_the_failure_count(flow):
    for _ in range(4):
        flow.login(password=WRONG_MD5)
    assert flow.login()["status"] == "Success"
    for _ in range(4):
        assert flow.login(password=WRONG_MD5)["errno"] == "20003"
    assert flow.login()["status"] == "Success"


def test_a_good_login_of_another_account_does_not_reset_the_guesses(flow, db, clock):
    # A client holding one account could guess another's password without end: four wrong
    # guesses, one good login of its own account, and again.
    set_api_user(db, "bob", "bobs password", int(clock() * 1000))
    bob = hashlib.md5(b"bobs password").hexdigest()
    for _ in range(4):
        assert flow.login(password=WRONG_MD5)["errno"] == "20003"
    assert flow.login(username="bob", password=bob)["status"] == "Success"
    assert flow.login(password=WRONG_MD5)["errno"] == "20003"  # the fifth: the lock starts
    assert flow.login(username="bob", password=bob) == {"status": "Failed", "errno": "20002"}


def test_guesses_at_several_accounts_are_reset_by_no_good_login(flow, db, clock):
    set_api_user(db, "bob", "bobs password", int(clock() * 1000))
    bob = hashlib.md5(b"bobs password").hexdigest()
    flow.login(username="bob", password=WRONG_MD5)
    for _ in range(3):
        flow.login(password=WRONG_MD5)
    assert flow.login()["status"] == "Success"  # the api account's own: bob's guess stays
    assert flow.login(username="bob", password=bob)["status"] == "Success"
    assert flow.login(password=WRONG_MD5)["errno"] == "20003"
    assert flow.login()["errno"] == "20002"


def test_a_count_from_before_the_upgrade_is_taken_as_the_next_failures_account(flow, db, clock):
    # A row written before migration 0019 names no account; the next failure names its own,
    # and that account's good login clears the count as it always did.
    with db.write() as conn:
        conn.execute(
            insert(login_guard).values(
                client_ip="127.0.0.1", failures=3, locked_until_ms=0,
                last_failure_ms=int(clock() * 1000), failed_account=None,
            )
        )  # fmt: skip
    assert flow.login(password=WRONG_MD5)["errno"] == "20003"  # the fourth
    assert flow.login()["status"] == "Success"
    for _ in range(4):
        assert flow.login(password=WRONG_MD5)["errno"] == "20003"
    assert flow.login()["status"] == "Success"


def test_after_a_lapsed_lock_the_count_starts_again(flow, clock):
    for _ in range(5):
        flow.login(password=WRONG_MD5)
    clock.advance(601)
    assert flow.login(password=WRONG_MD5)["errno"] == "20003"
    assert flow.login()["status"] == "Success"


def test_concurrent_wrong_logins_never_get_more_than_five_tries(make_client, api_account):
    attacker = Flow(make_client("127.0.0.9"))
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda _: attacker.login(password=WRONG_MD5)["errno"], range(12)))
    assert answers.count("20003") <= 5
    assert answers.count("20003") + answers.count("20002") == 12
    assert attacker.login()["errno"] == "20002"
