"""Nodes are interchangeable: three real ``cdrgate serve`` processes on one primary share
tokens, randoms and lockouts through it, migrate it once, and take turns at retention."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx

from cdrgate.cdr import CSV_HEADER
from cdrgate.client import CdrClient
from cdrgate.storage import retention, schema
from cdrgate.storage.db import Database
from tests.replicas.conftest import MAY, NODE_CDRS, Cluster, start_nodes
from tests.servers import PASSWORD, PASSWORD_MD5

DAY = ("2026-05-10 00:00:00", "2026-05-10 23:59:59")


def login(base_url: str, md5: str = PASSWORD_MD5, client_ip: str | None = None) -> dict[str, str]:
    headers = {"X-Forwarded-For": client_ip} if client_ip else {}
    body = {"username": "api", "password": md5, "port": "8260"}
    return httpx.post(f"{base_url}/api/v1.1.0/login", json=body, headers=headers).json()


def get_random(base_url: str, token: str, span: tuple[str, str]) -> str:
    body = {"extid": "all", "starttime": span[0], "endtime": span[1]}
    answer = httpx.post(f"{base_url}/api/v1.1.0/cdr/get_random?token={token}", json=body).json()
    assert answer["status"] == "Success", answer
    return str(answer["random"])


def download_url(base_url: str, token: str, random: str, span: tuple[str, str]) -> str:
    start, end = (t.replace(" ", "%20") for t in span)
    return (
        f"{base_url}/api/v1.1.0/cdr/download?extid=all&starttime={start}&endtime={end}"
        f"&token={token}&random={random}"
    )


def test_nodes_started_together_on_an_empty_schema_migrated_it_once(cluster: Cluster):
    db = Database(cluster.database_url)
    try:
        assert schema.current_revision(db) == schema.head_revision()
    finally:
        db.dispose()
    assert all(node.process.poll() is None for node in cluster.nodes)


def test_a_token_from_one_node_and_a_random_from_another_download_on_a_third(cluster: Cluster):
    a, b, c = cluster.urls
    token = login(a)["token"]
    random = get_random(b, token, DAY)
    answer = httpx.get(download_url(c, token, random, DAY), timeout=60)
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.text.startswith(CSV_HEADER) and answer.text.count("\n") > 1


def test_a_random_raced_across_the_three_nodes_is_spent_exactly_once(cluster: Cluster):
    token = login(cluster.urls[0])["token"]
    random = get_random(cluster.urls[1], token, DAY)
    attempts = cluster.urls * 4
    start = threading.Barrier(len(attempts))

    def attempt(base_url: str) -> httpx.Response:
        with httpx.Client() as http:  # a connection of its own, like separate applications
            start.wait(timeout=30)
            return http.get(download_url(base_url, token, random, DAY), timeout=60)

    with ThreadPoolExecutor(len(attempts)) as pool:
        answers = list(pool.map(attempt, attempts))

    files = [a for a in answers if a.headers["content-type"].startswith("text/csv")]
    refusals = [a.json() for a in answers if a not in files]
    assert len(files) == 1
    assert refusals == [{"status": "Failed", "errno": "20020"}] * (len(attempts) - 1)


def test_a_lockout_counted_on_two_nodes_holds_on_the_third(cluster: Cluster):
    a, b, c = cluster.urls
    client = "198.51.100.18"  # told by the trusted proxy (127.0.0.1) in X-Forwarded-For
    failures = [login(url, "0" * 32, client)["errno"] for url in (a, b, a, b, a)]
    assert failures == ["20003"] * 5
    assert login(c, client_ip=client) == {"status": "Failed", "errno": "20002"}
    assert login(c, client_ip="198.51.100.19")["status"] == "Success"


def test_retention_runs_on_one_node_at_a_time(cluster: Cluster):
    first, second = Database(cluster.database_url), Database(cluster.database_url)
    try:
        with retention.run_alone(first) as mine:
            assert mine
            with retention.run_alone(second) as theirs:
                assert not theirs
        with retention.run_alone(second) as theirs:
            assert theirs
    finally:
        first.dispose()
        second.dispose()


def test_the_sdk_fails_over_when_its_node_is_killed_mid_load(cluster: Cluster, tmp_path: Path):
    (doomed,) = start_nodes(cluster.database_url, cluster.replica_url, tmp_path, 1)
    try:
        # One window per day: thirty get_random + download pairs, the first ones on `doomed`.
        client = CdrClient(
            [doomed.base_url, *cluster.urls[1:]], "api", PASSWORD, window=timedelta(days=1)
        )
        with client:
            seen: list[tuple[str, str]] = []
            for cdr in client.iter_cdrs("all", *MAY):
                seen.append((cdr.callid, cdr.sn))
                if len(seen) == 1000:
                    doomed.process.kill()
                    doomed.process.wait(timeout=30)
            assert client.node_url == cluster.urls[1]
    finally:
        doomed.stop()
    assert len(seen) == NODE_CDRS
    assert len(set(seen)) == NODE_CDRS
