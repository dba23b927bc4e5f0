"""cdr/get_random's signed random (issued to the token's login address without allowedip):
its shape, that issuing it stores nothing, and that a download spends it once under every rule
a stored random keeps."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from cdrgate.services.downloads import RANDOM_KEY
from cdrgate.services.signed_randoms import RandomSigner
from cdrgate.storage import audit, server_keys
from cdrgate.storage.tables import cdr_random
from tests.conftest import Flow, make_cdr

DAY = ("2026-05-28 00:00:00", "2026-05-28 23:59:59")
OK = "text/csv; charset=utf-8"


def _stored(db) -> int:
    with db.read() as conn:
        return conn.execute(select(func.count()).select_from(cdr_random)).scalar_one()


def _get(flow: Flow, token: str, random: str, ext: str = "1000", span=DAY):
    response = flow.http.get(flow.download_url(token, random, ext, *span))
    return "csv" if response.headers["content-type"] == OK else response.json()["errno"]


def test_a_signed_random_is_32_lower_case_hex_and_its_get_random_stores_nothing(flow, db):
    token = flow.token()
    randoms = [flow.get_random(token, "1000", *DAY)["random"] for _ in range(3)]
    assert all(len(r) == 32 and r == r.lower() and int(r, 16) >= 0 for r in randoms)
    assert len(set(randoms)) == 3
    assert _stored(db) == 0


def test_a_signed_randoms_tag_is_the_keyed_blake2b_its_docstring_describes():
    # Workers and hosts of one store share the key, and during an upgrade run different
    # builds: a random issued by one must check in the other, so the tag's definition is fixed.
    key, token_hash = bytes(range(32)), "ab" * 32
    signer = RandomSigner(key)
    random = signer.issue(1_900_000_000_000, token_hash, "1000,1001", 100, 200)
    head, tag = random[:17], random[17:]
    message = f"{head}|{token_hash}|100|200|1000,1001".encode()
    digest = hashlib.blake2b(message, key=key, digest_size=8, person=b"cdrgate cdr-rnd1").digest()
    assert head.startswith(f"{1_900_000_000_000:011x}")
    assert tag == f"{int.from_bytes(digest) >> 4:015x}"
    assert signer.signed(random, token_hash, "1000,1001", 100, 200)
    assert not signer.signed(random, token_hash, "1000,1001", 100, 201)


def test_a_signed_random_downloads_once_and_a_second_use_is_20020(flow, db, add_cdrs):
    add_cdrs(make_cdr(callfrom="1000", timestart="2026-05-28 10:00:00"))
    token = flow.token()
    random = flow.get_random(token, "1000", *DAY)["random"]
    assert _get(flow, token, random) == "csv"
    assert _get(flow, token, random) == "20020"
    assert _stored(db) == 1  # spent: its row, kept until the purge as a stored one's


def test_a_signed_random_sent_in_upper_case_is_the_same_random(flow, add_cdrs):
    add_cdrs(make_cdr(callfrom="1000", timestart="2026-05-28 10:00:00"))
    token = flow.token()
    random = flow.get_random(token, "1000", *DAY)["random"]
    assert _get(flow, token, random.upper()) == "csv"
    assert _get(flow, token, random) == "20020"


def test_concurrent_downloads_of_one_signed_random_have_one_winner(
    make_client, api_account, add_cdrs
):
    add_cdrs(make_cdr(callfrom="1000", timestart="2026-05-28 10:00:00"))
    flow = Flow(make_client())
    token = flow.token()
    random = flow.get_random(token, "1000", *DAY)["random"]
    flows = [Flow(make_client()) for _ in range(8)]  # apps of their own: a key read each
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda f: _get(f, token, random), flows))
    assert sorted(answers) == ["20020"] * 7 + ["csv"]


def test_concurrent_downloads_of_one_signed_random_are_audited_once_each(
    make_client, api_account, add_cdrs, db
):
    add_cdrs(make_cdr(callfrom="1000", timestart="2026-05-28 10:00:00"))
    flow = Flow(make_client())
    token = flow.token()
    random = flow.get_random(token, "1000", *DAY)["random"]
    flows = [Flow(make_client()) for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda f: _get(f, token, random), flows))
    with db.read() as conn:
        records = audit.query(conn)
    assert sorted((r.outcome, r.errno, r.rows, r.account) for r in records) == [
        ("failed", "20020", 0, "api")
    ] * 7 + [("ok", None, 1, "api")]


def test_an_expired_signed_random_is_20020(flow, clock):
    token = flow.token()
    random = flow.get_random(token, "1000", *DAY)["random"]
    clock.advance(31)
    assert _get(flow, token, random) == "20020"


def test_a_signed_random_from_another_address_is_20015_and_20020_once_used(
    make_client, api_account, add_cdrs
):
    add_cdrs(make_cdr(callfrom="1000", timestart="2026-05-28 10:00:00"))
    here, there = Flow(make_client()), Flow(make_client(ip="127.0.0.2"))
    token = here.token()
    random = here.get_random(token, "1000", *DAY)["random"]
    assert _get(there, token, random) == "20015"
    assert _get(here, token, random) == "csv"  # the refusal did not spend it
    assert _get(there, token, random) == "20020"  # used comes before the address


def test_a_signed_random_for_another_token_or_filter_is_20020(flow, add_cdrs):
    add_cdrs(make_cdr(callfrom="1000", timestart="2026-05-28 10:00:00"))
    token, other = flow.token(), flow.token()
    random = flow.get_random(token, "1000", *DAY)["random"]
    assert _get(flow, other, random) == "20020"
    assert _get(flow, token, random, ext="1001") == "20020"
    assert _get(flow, token, random, span=(DAY[0], "2026-05-28 23:59:58")) == "20020"
    assert _get(flow, token, random) == "csv"  # none of those spent it


def test_a_tampered_signed_random_is_20020(flow, add_cdrs):
    add_cdrs(make_cdr(callfrom="1000", timestart="2026-05-28 10:00:00"))
    token = flow.token()
    random = flow.get_random(token, "1000", *DAY)["random"]
    flip = "0" if random[-1] != "0" else "1"
    later = f"{int(random[:11], 16) + 1:011x}" + random[11:]  # a longer life: the tag says no
    assert _get(flow, token, random[:-1] + flip) == "20020"
    assert _get(flow, token, later) == "20020"
    assert _get(flow, token, random) == "csv"


def test_with_allowedip_the_random_is_stored_and_the_named_address_may_download(
    make_client, api_account, db, add_cdrs
):
    add_cdrs(make_cdr(callfrom="1000", timestart="2026-05-28 10:00:00"))
    here, named = Flow(make_client()), Flow(make_client(ip="127.0.0.3"))
    token = here.token()
    random = here.get_random(token, "1000", *DAY, allowedip="127.0.0.3")["random"]
    assert len(random) == 32 and _stored(db) == 1
    assert _get(named, token, random) == "csv"
    assert _get(here, token, random) == "20020"


def test_a_get_random_from_another_address_than_the_login_is_stored_and_works(
    make_client, api_account, db, add_cdrs
):
    add_cdrs(make_cdr(callfrom="1000", timestart="2026-05-28 10:00:00"))
    login, caller = Flow(make_client()), Flow(make_client(ip="127.0.0.2"))
    token = login.token()
    random = caller.get_random(token, "1000", *DAY)["random"]
    assert _stored(db) == 1
    assert _get(login, token, random) == "20015"  # the caller's address, as before
    assert _get(caller, token, random) == "csv"


def test_two_services_on_one_database_sign_with_the_same_key(
    make_client, make_db, api_account, db, add_cdrs
):
    add_cdrs(make_cdr(callfrom="1000", timestart="2026-05-28 10:00:00"))
    one, two = Flow(make_client()), Flow(make_client())
    token = one.token()
    random = one.get_random(token, "1000", *DAY)["random"]
    assert _get(two, token, random) == "csv"
    handles = [make_db(db.url), make_db(db.url)]
    keys = []
    for handle in handles:
        with handle.write() as conn:
            keys.append(server_keys.get_or_create(conn, RANDOM_KEY))
    assert keys[0] == keys[1] and len(keys[0]) == server_keys.KEY_BYTES
