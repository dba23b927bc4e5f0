"""POST /api/{version}/cdr/push: NewCdr events in over HTTP, authorised by an ingest key."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import Connection, event

from cdrgate.storage.db import Database
from tests.ingest.conftest import stored_lines
from tests.ingest.test_newcdr import V1_EVENT, V2_EVENT

PUSH = "/api/v2.0.0/cdr/push"


@pytest.fixture
def pusher(make_client, ingest_key):
    key = ingest_key()
    http = make_client()

    def push(body, *, key: str | None = key, path: str = PUSH, **kwargs):
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        return http.post(path, json=body, headers=headers, **kwargs)

    return push


def test_a_single_v1_event_is_stored_and_downloadable(pusher, flow, db):
    response = pusher(V1_EVENT, path="/api/v1.1.0/cdr/push")
    assert response.status_code == 200
    assert response.json() == {
        "status": "Success", "received": "1", "inserted": "1", "duplicates": "0", "ignored": "0",
    }  # fmt: skip
    download = flow.download(flow.token(), start="2019-01-01 00:00:00", end="2019-12-31 23:59:59")
    assert download.text.splitlines()[1].startswith("1547392142.330,2019-01-13 23:09:02,1005,")


def test_a_batch_is_stored_and_a_resent_event_is_a_duplicate(pusher, db):
    second = {**V2_EVENT, "callid": "1571897930.6"}
    assert pusher([V2_EVENT, second]).json()["inserted"] == "2"
    answer = pusher([second]).json()
    assert (answer["status"], answer["inserted"], answer["duplicates"]) == ("Success", "0", "1")
    assert len(stored_lines(db)) == 2


def test_events_without_sn_get_the_serial_of_their_key(pusher, db):
    event = {k: v for k, v in V2_EVENT.items() if k != "sn"}
    assert pusher(event).json()["status"] == "Success"
    assert stored_lines(db)[0].endswith(",freepbx-1")


def test_other_events_are_acknowledged_and_not_stored(pusher, db):
    answer = pusher([{"event": "ExtensionStatus", "extension": "1000"}, V2_EVENT]).json()
    assert (answer["received"], answer["ignored"]) == ("1", "1")
    assert len(stored_lines(db)) == 1


@pytest.mark.parametrize("key", [None, "", "cdrk_not-a-key"])
def test_a_missing_or_unknown_key_is_401_and_nothing_is_stored(pusher, db, key):
    response = pusher(V2_EVENT, key=key)
    assert response.status_code == 401
    assert response.json()["errno"] == ("20004" if key else "20005")
    assert stored_lines(db) == []


def test_an_api_login_token_is_not_an_ingest_key(pusher, flow, db):
    response = pusher(V2_EVENT, key=flow.token())
    assert (response.status_code, response.json()["errno"]) == (401, "20004")


def test_one_bad_event_refuses_the_whole_batch_and_says_which(pusher, db):
    bad = {**V2_EVENT, "callid": "2.2", "timestart": "2019-13-01 00:00:00"}
    response = pusher([V2_EVENT, bad])
    assert response.status_code == 200  # re-sending it would not help
    answer = response.json()
    assert (answer["status"], answer["errno"], answer["index"]) == ("Failed", "20019", "1")
    assert "timestart" in answer["reason"]
    assert stored_lines(db) == []


def test_an_event_without_event_or_action_is_refused(pusher, db):
    answer = pusher({"callid": "1.1", "timestart": "2026-05-28 10:00:00"}).json()
    assert (answer["errno"], answer["index"]) == ("10004", "0")


@pytest.mark.parametrize("name", ["", "  ", ["NewCdr"], 5, None])
def test_an_event_key_that_names_no_event_is_refused_not_ignored(pusher, db, name):
    good = {**V2_EVENT, "callid": "1.2"}
    answer = pusher([good, {**V2_EVENT, "event": name}]).json()
    assert (answer["status"], answer["errno"], answer["index"]) == ("Failed", "10004", "1")
    assert "names no event" in answer["reason"]
    assert stored_lines(db) == []


def test_a_body_that_is_not_json_is_20000(pusher, make_client, ingest_key):
    http = make_client()
    response = http.post(
        PUSH, content=b"action=NewCdr", headers={"Authorization": f"Bearer {ingest_key('x')}"}
    )
    assert (response.status_code, response.json()["errno"]) == (200, "20000")


def test_a_body_over_the_limit_is_refused(make_client, ingest_key):
    http = make_client(ingest_max_body_bytes=1000)
    events = [{**V2_EVENT, "callid": f"1.{n}"} for n in range(20)]
    response = http.post(PUSH, json=events, headers={"Authorization": f"Bearer {ingest_key()}"})
    assert response.json()["errno"] == "20000" and "larger than 1000" in response.json()["reason"]


def test_a_failing_store_answers_503_so_the_sender_retries(pusher, db: Database):
    if not db.is_sqlite:
        pytest.skip("breaks the SQLite file's schema on purpose")
    with db.write() as conn:
        conn.exec_driver_sql("DROP TABLE cdr")
    response = pusher(V2_EVENT)
    assert (response.status_code, response.json()["errno"]) == (503, "30003")


def test_push_is_post_only(pusher, make_client):
    assert make_client().get(PUSH).json()["errno"] == "20001"


def test_the_commit_that_stores_a_push_runs_at_synchronous_full_and_the_pool_stays_normal(
    pusher, db: Database
):
    """Proves, on the very connection that commits each transaction, at the moment it commits:
    the commit holding the pushed row runs with synchronous=FULL (SQLite fsyncs the WAL before
    that commit returns, so the 200 is sent after the fsync), later commits are back at NORMAL,
    and a second connection sees the row. Cannot prove that the disk honours the fsync: that
    would take a power cut."""
    if not db.is_sqlite:
        pytest.skip("SQLite synchronous levels (PostgreSQL commits are durable by default)")
    commits: list[tuple[int, int]] = []  # (synchronous level, cdr rows) at each commit

    def on_commit(conn: Connection) -> None:
        raw = conn.connection.driver_connection
        assert raw is not None
        level = raw.execute("PRAGMA synchronous").fetchone()[0]
        commits.append((level, raw.execute("SELECT count(*) FROM cdr").fetchone()[0]))

    event.listen(db.engine, "commit", on_commit)
    try:
        assert pusher(V2_EVENT).json()["inserted"] == "1"
        with db.write() as conn:
            conn.exec_driver_sql("DELETE FROM cdr WHERE 0")
    finally:
        event.remove(db.engine, "commit", on_commit)
    storing = next(level for level, rows in commits if rows == 1)
    assert storing == 2  # FULL
    assert commits[-1][0] == 1  # NORMAL again for the pool's next writer
    assert len(stored_lines(db)) == 1


@pytest.mark.parametrize(
    "duration", [2**63, 2**31, str(2**63), "9" * 400], ids=["int-2^63", "int-2^31", "text", "long"]
)
def test_a_duration_the_store_cannot_hold_is_refused_per_event_for_good(pusher, db, duration):
    hostile = {**V2_EVENT, "callid": "1571897930.9", "callduraction": duration}
    response = pusher([V2_EVENT, hostile])
    assert response.status_code == 200  # a 503 would make the PBX re-send it forever
    answer = response.json()
    assert (answer["errno"], answer["index"]) == ("10004", "1")
    assert "callduraction is out of range" in answer["reason"]
    assert stored_lines(db) == []  # all or nothing
    assert pusher([V2_EVENT]).json()["inserted"] == "1"  # other batches are unaffected


def test_a_body_cut_by_the_sender_is_a_client_that_left_not_a_store_failure(
    make_client, ingest_key, db, caplog
):
    """A PBX whose connection drops mid-body: nothing stored, and the server logs a client that
    left (499), not an ERROR with a traceback and a 503 that counts as the store failing."""
    import asyncio
    import json

    app = make_client().app
    body = json.dumps([{**V2_EVENT, "callid": f"9.{n}"} for n in range(50)]).encode()
    incoming = [
        {"type": "http.request", "body": body[: len(body) // 2], "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, object]] = []

    async def receive():
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": PUSH, "raw_path": PUSH.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 50000), "server": ("pbx.test", 8088),
        "headers": [
            (b"host", b"pbx.test"), (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {ingest_key()}".encode()),
            (b"transfer-encoding", b"chunked"),
        ],
    }  # fmt: skip
    with caplog.at_level(logging.INFO):
        asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 499
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert stored_lines(db) == []
