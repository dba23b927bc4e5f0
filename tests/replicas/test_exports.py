"""Exports read from the streaming replica, and never at the cost of a client: a download
includes what was committed before its random was redeemed, and a replica that is stopped or
lags is skipped for the primary."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import httpx
import psycopg
from sqlalchemy.engine import make_url

from cdrgate.cdr import CSV_HEADER
from tests.conftest import make_cdr
from tests.replicas.conftest import (
    CATCH_UP_S,
    MAY,
    NODE_CDRS,
    Cluster,
    ReplicaServer,
    plain_dsn,
    start_nodes,
)
from tests.replicas.test_nodes import download_url, get_random, login
from tests.servers import run_cli

T = TypeVar("T")
JUNE = ("2026-06-01 00:00:00", "2026-06-30 23:59:59")


def cdr_scans(url: str, schema_name: str) -> int:
    """Index and sequential scans of the CDR table and its monthly partitions in ``schema_name``, per the server's
    cumulative statistics (a fresh connection: a snapshot is cached per transaction)."""
    with psycopg.connect(plain_dsn(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(coalesce(seq_scan, 0) + coalesce(idx_scan, 0)), 0) "
            "FROM pg_stat_user_tables WHERE schemaname = %s AND relname ~ '^cdr(_p[0-9]+)?$'",
            (schema_name,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def schema_of(url: str) -> str:
    options = make_url(url).query["options"]
    assert isinstance(options, str)
    return options.split("search_path=", 1)[1]


def server_now(url: str) -> datetime:
    with psycopg.connect(plain_dsn(url), autocommit=True) as conn:
        row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    return row[0]


def cdrgate_backends_since(url: str, since: datetime) -> int:
    with psycopg.connect(plain_dsn(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = 'cdrgate' AND backend_start >= %s",
            (since,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def month(base_url: str, span: tuple[str, str] = MAY) -> str:
    token = login(base_url)["token"]
    random = get_random(base_url, token, span)
    answer = httpx.get(download_url(base_url, token, random, span), timeout=120)
    assert answer.headers["content-type"].startswith("text/csv"), answer.text[:200]
    return answer.text


def scans_while(cluster: Cluster, logs: Path, work: Callable[[str], T]) -> tuple[T, int, int]:
    """``work(base_url)`` on a fresh node; then how many scans of the CDR table it caused on
    the primary and on the replica (read once its backends have exited and published them)."""
    name = schema_of(cluster.database_url)
    since = server_now(cluster.database_url)
    (node,) = start_nodes(cluster.database_url, cluster.replica_url, logs, 1)
    primary_before = cdr_scans(cluster.database_url, name)
    replica_before = cdr_scans(cluster.replica_url, name)
    try:
        result = work(node.base_url)
    finally:
        node.stop()  # its backends exit, which publishes their statistics
    deadline = time.monotonic() + CATCH_UP_S
    while any(
        cdrgate_backends_since(url, since) for url in (cluster.database_url, cluster.replica_url)
    ):
        assert time.monotonic() < deadline, "the stopped node's connections did not end"
        time.sleep(0.2)
    return (
        result,
        cdr_scans(cluster.database_url, name) - primary_before,
        cdr_scans(cluster.replica_url, name) - replica_before,
    )


def test_an_export_is_read_on_the_replica_and_not_on_the_primary(
    cluster: Cluster, replica: ReplicaServer, tmp_path: Path
):
    body, on_primary, on_replica = scans_while(cluster, tmp_path, month)
    assert body.count("\n") == NODE_CDRS + 1
    # About twenty pages were read on the replica, not one on the primary.
    assert on_replica >= 10
    assert on_primary == 0


def test_a_download_includes_cdrs_imported_while_the_replica_is_behind(
    cluster: Cluster, replica: ReplicaServer, tmp_path: Path
):
    node = cluster.urls[0]
    rows = [
        make_cdr(callid=f"1781000000.{i}", timestart=f"2026-06-15 10:00:{i:02d}") for i in range(3)
    ]
    csv_file = tmp_path / "june.csv"
    csv_file.write_text(CSV_HEADER + "".join(row.csv_line() for row in rows))
    replica.execute("SELECT pg_wal_replay_pause()")
    try:
        run_cli(
            "import", str(csv_file), env={**os.environ, "CDRGATE_DATABASE": cluster.database_url}
        )
        body = month(node, JUNE)
    finally:
        replica.execute("SELECT pg_wal_replay_resume()")
    assert [line.split(",")[0] for line in body.splitlines()[1:]] == [r.callid for r in rows]
    # The paused (so stale) replica was skipped for the primary, and the log says so.
    assert "skipped" in cluster.nodes[0].output()
    replica.wait_for(cluster.database_url)


def test_a_download_right_after_an_import_sees_it_through_the_replica(
    cluster: Cluster, replica: ReplicaServer, tmp_path: Path
):
    (node,) = start_nodes(cluster.database_url, cluster.replica_url, tmp_path, 1)
    try:
        row = make_cdr(callid="1781000100.1", timestart="2026-06-20 09:00:00")
        csv_file = tmp_path / "one.csv"
        csv_file.write_text(CSV_HEADER + row.csv_line())
        run_cli(
            "import", str(csv_file), env={**os.environ, "CDRGATE_DATABASE": cluster.database_url}
        )
        body = month(node.base_url, ("2026-06-20 00:00:00", "2026-06-20 23:59:59"))
    finally:
        node.stop()
    assert body.splitlines()[1].split(",")[0] == "1781000100.1"


def test_a_replica_stopped_mid_load_costs_no_client_anything(
    cluster: Cluster, replica: ReplicaServer
):
    node = cluster.urls[1]
    token = login(node)["token"]
    random = get_random(node, token, MAY)
    stopped = threading.Event()

    def load(_: int) -> int:
        lines = 0
        while not stopped.is_set() or lines == 0:
            lines = month(node).count("\n")
            assert lines == NODE_CDRS + 1
        return lines

    try:
        with httpx.stream("GET", download_url(node, token, random, MAY), timeout=120) as held:
            chunks = held.iter_bytes()
            first = next(chunks)  # the header and first page: the rest is still to be read
            with ThreadPoolExecutor(3) as pool:
                running = [pool.submit(load, i) for i in range(3)]
                replica.stop()
                stopped.set()
                rest = b"".join(chunks)
                assert [future.result() for future in running] == [NODE_CDRS + 1] * 3
        assert (first + rest).decode().count("\n") == NODE_CDRS + 1
        assert month(node).count("\n") == NODE_CDRS + 1
    finally:
        stopped.set()
        replica.start()
    replica.wait_for(cluster.database_url)


def test_the_query_api_reads_on_the_replica_too(
    cluster: Cluster, replica: ReplicaServer, tmp_path: Path
):
    def query(base_url: str) -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        auth = {"Authorization": f"Bearer {login(base_url)['token']}"}
        return (
            httpx.get(f"{base_url}/v1/cdrs?limit=5&count=true", headers=auth, timeout=60),
            httpx.get(f"{base_url}/v1/cdrs?format=csv", headers=auth, timeout=120),
            httpx.get(f"{base_url}/v1/stats?group=day", headers=auth, timeout=60),
        )

    (page, csv, stats), on_primary, on_replica = scans_while(cluster, tmp_path, query)
    # Other tests of the module add CDRs to the shared cluster: the three answers agree.
    total = page.json()["total"]
    assert page.status_code == 200 and total >= NODE_CDRS
    assert csv.text.count("\n") == total + 1
    assert sum(group["calls"] for group in stats.json()["groups"]) == total
    assert on_replica > 0 and on_primary == 0
