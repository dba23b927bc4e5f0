"""The server log says why each API request failed: errno and meaning per request at INFO,
the rule that refused it at DEBUG, and never a password, token or random."""

from __future__ import annotations

import hashlib
import logging

import pytest

from tests.conftest import API_MD5, make_cdr

WRONG_MD5 = hashlib.md5(b"wrong password").hexdigest()


@pytest.fixture
def api_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="cdrgate.api")
    return caplog


def lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "cdrgate.api" and r.levelno == level
    ]


def test_refused_login_logs_errno_meaning_and_the_rule(flow, api_log):
    flow.login(password=WRONG_MD5)
    assert lines(api_log, logging.INFO) == [
        "POST login from 127.0.0.1: Failed errno 20003 (invalid username or password)"
    ]
    [why] = lines(api_log, logging.DEBUG)
    assert "wrong password" in why and "failure 1 of" in why
    assert WRONG_MD5 not in api_log.text


def test_login_as_an_unknown_user_says_so_at_debug(flow, api_log):
    flow.login(username="nobody")
    assert "no such API user" in lines(api_log, logging.DEBUG)[0]


def test_successful_calls_log_one_debug_line_each_without_token_or_random(flow, add_cdrs, api_log):
    # At INFO the access log's line is the one a success writes (not enabled in these apps).
    add_cdrs(make_cdr())
    token = flow.token()
    answer = flow.get_random(token)
    flow.http.get(flow.download_url(token, answer["random"], "all", "2026-05-01 00:00:00",
                                    "2026-05-31 23:59:59"))  # fmt: skip
    assert lines(api_log, logging.DEBUG) == [
        "POST login from 127.0.0.1: Success",
        "POST cdr/get_random from 127.0.0.1: Success",
        "GET cdr/download from 127.0.0.1: Success",
    ]
    assert lines(api_log, logging.INFO) == []
    for secret in (token, answer["random"], API_MD5):
        assert secret not in api_log.text


def test_spent_random_is_logged_as_20020_with_the_reason(flow, add_cdrs, api_log):
    add_cdrs(make_cdr())
    token = flow.token()
    answer = flow.get_random(token)
    url = flow.download_url(token, answer["random"], "all", "2026-05-01 00:00:00",
                            "2026-05-31 23:59:59")  # fmt: skip
    flow.http.get(url)
    assert flow.http.get(url).json()["errno"] == "20020"
    assert lines(api_log, logging.INFO)[-1] == (
        "GET cdr/download from 127.0.0.1: Failed errno 20020 (download random invalid or expired)"
    )
    assert "already used" in lines(api_log, logging.DEBUG)[-1]


def test_random_for_other_times_names_the_mismatch(flow, api_log):
    token = flow.token()
    answer = flow.get_random(token)
    url = flow.download_url(token, answer["random"], "all", "2026-05-02 00:00:00",
                            "2026-05-31 23:59:59")  # fmt: skip
    assert flow.http.get(url).json()["errno"] == "20020"
    assert "differ from those given to get_random" in lines(api_log, logging.DEBUG)[-1]


def test_missing_token_on_get_random_is_logged_with_the_rule(flow, api_log):
    flow.http.post(flow.url("cdr/get_random"), json={"extid": "all"})
    assert lines(api_log, logging.INFO)[-1].endswith("Failed errno 20005 (token is empty)")
    assert "no token=" in lines(api_log, logging.DEBUG)[-1]


def test_a_secret_pasted_into_the_path_is_redacted(client, api_log):
    secret = "0123456789abcdef0123456789abcdef"
    assert client.post(f"/api/v1.1.0/{secret}").json()["errno"] == "10003"
    assert "Failed errno 10003" in lines(api_log, logging.INFO)[-1]
    assert secret not in api_log.text


def test_every_errno_has_a_meaning():
    from cdrgate.errors import MEANINGS, Errno

    assert set(MEANINGS) == set(Errno)


FORGED = "2026-01-01 00:00:00,000 INFO cdrgate.access: FORGED"


def test_control_characters_from_the_path_stay_within_their_log_line(db, clock, caplog):
    from starlette.testclient import TestClient

    from cdrgate.app import create_app
    from cdrgate.settings import Settings

    caplog.set_level(logging.INFO, logger="cdrgate")
    app = create_app(Settings(database=db.url, access_log=True), database=db, clock=clock)
    with TestClient(app) as client:
        client.post(f"/api/v1.1.0/login%0a{FORGED}", json={})
        client.get("/no%1b[31mRED%00")
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("cdrgate")]
    # Before: the path is logged decoded, so "%0a" began a line of the client's choosing.
    assert messages and not [m for m in messages if "\n" in m or "\x1b" in m or "\x00" in m]
    assert any(f"login\\x0a{FORGED}" in m for m in messages if m.startswith("POST "))
    assert any(f'"POST /api/v1.1.0/login\\x0a{FORGED}"' in m for m in messages)
    assert any('"GET /no\\x1b[31mRED\\x00"' in m for m in messages)
