"""Tokens: sliding 30-minute idle lifetime, heartbeat, logout, and the token errnos."""

from __future__ import annotations

from tests.conftest import make_cdr


def test_missing_or_blank_token_is_20005(client):
    body = {"extid": "all", "starttime": "2026-05-01 00:00:00", "endtime": "2026-05-02 00:00:00"}
    assert client.post("/api/v1.1.0/cdr/get_random", json=body).json()["errno"] == "20005"
    answer = client.post("/api/v1.1.0/cdr/get_random?token=", json=body).json()
    assert answer["errno"] == "20005"
    assert client.post("/api/v1.1.0/heartbeat?token=%20").json()["errno"] == "20005"


def test_unknown_token_is_20004(flow):
    assert flow.get_random("0" * 32)["errno"] == "20004"


def test_token_expires_after_30_idle_minutes_with_20006(flow, clock):
    token = flow.token()
    clock.advance(30 * 60)
    assert flow.get_random(token)["errno"] == "20006"


def test_any_authenticated_request_slides_the_lifetime(flow, clock, add_cdrs):
    add_cdrs(make_cdr())
    token = flow.token()
    for _ in range(3):
        clock.advance(29 * 60)
        assert flow.get_random(token)["status"] == "Success"
    clock.advance(29 * 60)
    assert flow.download(token).status_code == 200  # the download itself also refreshes
    clock.advance(29 * 60)
    assert flow.get_random(token)["status"] == "Success"


def test_a_refused_get_random_or_download_still_slides_the_lifetime(flow, clock):
    # Both authenticate inside the transaction that would issue or spend the random; a
    # refusal must not roll the token's sliding mark back.
    token = flow.token()
    clock.advance(29 * 60)
    assert flow.get_random(token, start="not a time")["errno"] == "20019"
    clock.advance(29 * 60)
    url = flow.download_url(token, "0" * 32, "all", "2026-05-01 00:00:00", "2026-05-02 00:00:00")
    assert flow.http.get(url).json()["errno"] == "20020"
    clock.advance(29 * 60)
    assert flow.get_random(token)["status"] == "Success"


def test_heartbeat_keeps_the_token_alive_and_accepts_event_fields(client, flow, clock):
    token = flow.token()
    clock.advance(25 * 60)
    body = {"ipaddr": "192.0.2.10", "port": 8260, "url": "192.0.2.10:8260/report", "urlflag": "1"}
    assert client.post(f"/api/v1.1.0/heartbeat?token={token}", json=body).json() == {
        "status": "Success"
    }
    clock.advance(25 * 60)
    assert flow.get_random(token)["status"] == "Success"


def test_heartbeat_needs_no_body(client, flow):
    token = flow.token()
    assert client.post(f"/api/v1.1.0/heartbeat?token={token}").json()["status"] == "Success"


def test_logout_kills_the_token_with_20004(client, flow):
    token, other = flow.token(), flow.token()
    assert client.post(f"/api/v1.1.0/logout?token={token}").json() == {"status": "Success"}
    assert flow.get_random(token)["errno"] == "20004"
    assert client.post(f"/api/v1.1.0/logout?token={token}").json()["errno"] == "20004"
    assert flow.get_random(other)["status"] == "Success"


def test_tokens_are_stored_hashed(flow, db):
    token = flow.token()
    with db.read() as conn:
        stored = [row[0] for row in conn.exec_driver_sql("SELECT token_hash FROM api_token")]
    assert stored and token not in stored


def test_a_token_lives_30_minutes_after_its_last_request_give_or_take_5_seconds(flow, clock):
    # The sliding mark is written at most every 5 s (one write per request would serialise
    # every call on the database's write lock); the lifetime is exact to within that.
    token = flow.token()
    clock.advance(600)
    assert flow.get_random(token)["status"] == "Success"  # refreshes: mark older than 5 s
    clock.advance(3)
    assert flow.get_random(token)["status"] == "Success"  # within 5 s: mark not rewritten
    clock.advance(30 * 60 - 5 - 3)
    assert flow.get_random(token)["status"] == "Success"  # 30 min - 5 s after the last request
    clock.advance(30 * 60)
    assert flow.get_random(token)["errno"] == "20006"
