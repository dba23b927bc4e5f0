"""The key that signs cdr/get_random's randoms (``server_key``): one per database however many
processes race to create it, a key that changes under live randoms (the row deleted, a
backup from before the key restored) refuses them cleanly with 20020, never a 500, and a
running process adopts the key that replaced its own at the first random it refuses for it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import func, select

from cdrgate import backup as backups
from cdrgate.errors import Errno
from cdrgate.services.downloads import KEY_REREAD_SECONDS, RANDOM_KEY
from cdrgate.storage import server_keys
from cdrgate.storage.db import Database
from cdrgate.storage.tables import server_key
from tests.conftest import Flow, make_cdr
from tests.servers import PASSWORD_MD5, prepare_database

DAY = ("2026-05-28 00:00:00", "2026-05-28 23:59:59")
OK = "text/csv; charset=utf-8"
RACERS = 6


def _get(flow: Flow, token: str, random: str) -> str:
    response = flow.http.get(flow.download_url(token, random, "all", *DAY))
    return "csv" if response.headers["content-type"] == OK else str(response.json()["errno"])


def test_handles_racing_to_create_the_key_all_get_the_one_stored(make_db, db):
    handles = [make_db(db.url) for _ in range(RACERS)]  # an engine each, as processes have
    start = threading.Barrier(RACERS)

    def create(index: int) -> bytes:
        start.wait(timeout=30)
        with handles[index].write(durable=True) as conn:
            return server_keys.get_or_create(conn, RANDOM_KEY)

    with ThreadPoolExecutor(RACERS) as pool:
        keys = set(pool.map(create, range(RACERS)))
    with db.read() as conn:
        rows = conn.execute(select(func.count()).select_from(server_key)).scalar_one()
    assert len(keys) == 1 and rows == 1


def test_a_deleted_key_row_refuses_the_old_keys_randoms_in_a_new_process_with_20020(
    make_client, api_account, add_cdrs, db
):
    add_cdrs(make_cdr(callfrom="1000", timestart="2026-05-28 10:00:00"))
    old = Flow(make_client())
    token = old.token()
    random = old.get_random(token, "all", *DAY)["random"]
    with db.write() as conn:
        conn.execute(server_key.delete())
    fresh = Flow(make_client())  # a process started since: it creates a new key
    assert _get(fresh, token, random) == Errno.CDR_RANDOM_INVALID.value
    assert _get(fresh, token, fresh.get_random(token, "all", *DAY)["random"]) == "csv"
    assert _get(old, token, random) == "csv"  # the process that signed it kept its key


def test_a_restore_keeps_the_backups_key_and_live_randoms_of_another_are_20020(
    start_server, tmp_path
):
    url = prepare_database(tmp_path)
    server = start_server()
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        flow = Flow(http)
        token = flow.login(password=PASSWORD_MD5)["token"]
        backups.backup(url, tmp_path / "before-key.db")  # the token, no key yet
        first = flow.get_random(token, "all", *DAY)["random"]  # creates the key
        backups.backup(url, tmp_path / "with-key.db")
        second = flow.get_random(token, "all", *DAY)["random"]
    server.stop()

    backups.restore(tmp_path / "with-key.db", url)
    server = start_server()
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        assert _get(Flow(http), token, first) == "csv"  # the same key: still live
    server.stop()

    backups.restore(tmp_path / "before-key.db", url)
    server = start_server()
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        flow = Flow(http)
        assert _get(flow, token, second) == Errno.CDR_RANDOM_INVALID.value  # a new key
        assert _get(flow, token, flow.get_random(token, "all", *DAY)["random"]) == "csv"


def _forged(random: str) -> str:
    """``random`` with its tag's last digit changed: well-formed, signed by no key."""
    return random[:-1] + ("0" if random[-1] != "0" else "1")


def test_a_server_started_before_the_key_was_replaced_accepts_the_new_keys_randoms(
    start_server, tmp_path
):
    """Two live servers that read different keys (the row deleted between their starts):
    each random the other signs is downloaded, in both directions, without a restart."""
    url = prepare_database(tmp_path)
    first = start_server()
    with httpx.Client(base_url=first.base_url, timeout=60) as http:
        older = Flow(http)
        token = older.login(password=PASSWORD_MD5)["token"]
        assert older.get_random(token, "all", *DAY)["status"] == "Success"  # reads the key
        store = Database(url)
        try:
            with store.write() as conn:
                conn.execute(server_key.delete())
        finally:
            store.dispose()
        second = start_server()  # creates a new key
        with httpx.Client(base_url=second.base_url, timeout=60) as other:
            newer = Flow(other)
            assert _get(older, token, newer.get_random(token, "all", *DAY)["random"]) == "csv"
            # The first server signs with the new key since: the second takes its randoms.
            assert _get(newer, token, older.get_random(token, "all", *DAY)["random"]) == "csv"


def test_a_process_reads_the_key_again_at_most_once_a_period_however_many_randoms_it_refuses(
    make_client, api_account, add_cdrs, db, clock
):
    add_cdrs(make_cdr(callfrom="1000", timestart="2026-05-28 10:00:00"))
    old = Flow(make_client())
    token = old.token()
    forged = _forged(old.get_random(token, "all", *DAY)["random"])
    assert _get(old, token, forged) == Errno.CDR_RANDOM_INVALID.value  # read the key again
    with db.write() as conn:
        conn.execute(server_key.delete())
    fresh = Flow(make_client())  # a process started since: it creates a new key
    random = fresh.get_random(token, "all", *DAY)["random"]
    # Within the period the old process keeps its key: the new key's random is refused, as
    # every forged one is, without a read each.
    assert _get(old, token, random) == Errno.CDR_RANDOM_INVALID.value
    clock.advance(KEY_REREAD_SECONDS)  # the random is still live (30 s)
    assert _get(old, token, _forged(random)) == Errno.CDR_RANDOM_INVALID.value  # reads it
    assert _get(old, token, random) == "csv"
    assert _get(old, token, random) == Errno.CDR_RANDOM_INVALID.value  # spent: once only
