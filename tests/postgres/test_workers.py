"""Several server processes, one truth: real `cdrgate serve` processes (one of them with
`--workers 2`) on loopback, sharing one PostgreSQL database."""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
from sqlalchemy.engine import make_url

from cdrgate.cdr import CSV_HEADER
from cdrgate.cli.serve import settings_environ
from cdrgate.settings import Settings
from cdrgate.storage import schema
from tests.pg_backends import terminate_backends
from tests.postgres.conftest import FLEET_CDRS, Fleet
from tests.waiting import wait_until

DAY = ("2026-03-10 00:00:00", "2026-03-10 23:59:59")
MONTH = ("2026-03-01 00:00:00", "2026-03-31 23:59:59")
# The serving process may grow by at most this much while streaming the whole month.
MEMORY_BOUND = 4 * 1024 * 1024


def login(base_url: str, md5: str, client_ip: str | None = None) -> dict[str, str]:
    headers = {"X-Forwarded-For": client_ip} if client_ip else {}
    body = {"username": "api", "password": md5, "port": "8260"}
    return httpx.post(f"{base_url}/api/v1.1.0/login", json=body, headers=headers).json()


def get_random(base_url: str, token: str, ext: str, span: tuple[str, str]) -> str:
    body = {"extid": ext, "starttime": span[0], "endtime": span[1]}
    answer = httpx.post(f"{base_url}/api/v1.1.0/cdr/get_random?token={token}", json=body).json()
    assert answer["status"] == "Success", answer
    return answer["random"]


def download_url(base_url: str, token: str, random: str, ext: str, span: tuple[str, str]) -> str:
    start, end = (t.replace(" ", "%20") for t in span)
    return (
        f"{base_url}/api/v1.1.0/cdr/download?extid={ext}&starttime={start}&endtime={end}"
        f"&token={token}&random={random}"
    )


def test_serve_migrated_the_empty_database_and_runs_two_worker_processes(fleet: Fleet):
    assert fleet.schema_at_start == schema.head_revision()
    assert len(fleet.multi.worker_pids()) == 2


def test_a_random_downloaded_at_once_through_different_processes_succeeds_exactly_once(
    fleet: Fleet,
):
    token = login(fleet.multi.base_url, fleet.password_md5)["token"]
    random = get_random(fleet.multi.base_url, token, "1000", DAY)
    servers = [fleet.multi.base_url, fleet.single.base_url] * 6
    start = threading.Barrier(len(servers))

    def attempt(base_url: str) -> httpx.Response:
        with httpx.Client() as http:  # a connection of its own, like separate applications
            start.wait(timeout=30)
            return http.get(download_url(base_url, token, random, "1000", DAY), timeout=60)

    with ThreadPoolExecutor(len(servers)) as pool:
        answers = list(pool.map(attempt, servers))

    files = [a for a in answers if a.headers["content-type"].startswith("text/csv")]
    refusals = [a.json() for a in answers if a not in files]
    assert len(files) == 1
    assert files[0].text.startswith(CSV_HEADER) and len(files[0].text) > len(CSV_HEADER)
    assert refusals == [{"status": "Failed", "errno": "20020"}] * (len(servers) - 1)


def test_a_lockout_counted_on_one_process_holds_on_all(fleet: Fleet):
    client = "198.51.100.7"  # told by the trusted proxy (127.0.0.1) in X-Forwarded-For
    answers = [login(fleet.multi.base_url, "0" * 32, client)["errno"] for _ in range(5)]
    assert answers == ["20003"] * 5
    for base_url in (fleet.multi.base_url, fleet.single.base_url):
        assert login(base_url, fleet.password_md5, client) == {
            "status": "Failed",
            "errno": "20002",
        }
    # Another client behind the same proxy is not affected.
    assert login(fleet.single.base_url, fleet.password_md5, "198.51.100.8")["status"] == "Success"


def test_a_peer_that_is_not_a_trusted_proxy_cannot_choose_its_client_ip(fleet: Fleet):
    locked = "198.51.100.9"
    for _ in range(5):
        login(fleet.single.base_url, "0" * 32, locked)
    # 127.0.0.2 is not a trusted proxy: its X-Forwarded-For is ignored, in both directions.
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport) as untrusted:
        body = {"username": "api", "password": fleet.password_md5, "port": "8260"}
        answer = untrusted.post(
            f"{fleet.single.base_url}/api/v1.1.0/login",
            json=body,
            headers={"X-Forwarded-For": locked},
        ).json()
    assert answer["status"] == "Success"


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _cdrgate_backend_queries(database_url: str) -> list[str]:
    dsn = make_url(database_url).set(query={}).render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT query FROM pg_stat_activity WHERE application_name = 'cdrgate' "
            "AND xact_start IS NOT NULL"
        ).fetchall()
    return [row[0] for row in rows]


def test_a_large_export_streams_in_bounded_memory_and_a_stalled_one_holds_no_transaction(
    fleet: Fleet,
):
    base_url, pid = fleet.single.base_url, fleet.single.process.pid
    token = login(base_url, fleet.password_md5)["token"]
    # A first small download, so one-off allocations are not counted as growth.
    warm_up = get_random(base_url, token, "1001", DAY)
    assert httpx.get(download_url(base_url, token, warm_up, "1001", DAY)).status_code == 200
    random = get_random(base_url, token, "all", MONTH)
    before = _rss(pid)
    peak = before
    received = lines = 0
    with httpx.stream(
        "GET",
        download_url(base_url, token, random, "all", MONTH),
        timeout=120,
    ) as response:
        assert response.headers["content-type"].startswith("text/csv")
        chunks = response.iter_bytes()
        first = next(chunks)
        # The client stalls: once the socket buffers are full the server waits, holding no
        # transaction (pages are short reads), so nothing stays "idle in transaction".
        deadline = time.monotonic() + 30
        while (in_flight := _cdrgate_backend_queries(fleet.database_url)) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.2)
        for chunk in itertools.chain([first], chunks):
            received += len(chunk)
            lines += chunk.count(b"\n")
            peak = max(peak, _rss(pid))
    assert lines == FLEET_CDRS + 1  # every CDR of the month, plus the header
    assert in_flight == [], in_flight
    assert received > 3 * MEMORY_BOUND
    print("GROWTH", peak - before)
    assert peak - before < MEMORY_BOUND


def test_worker_processes_get_the_same_settings_through_the_environment():
    settings = Settings(
        database="postgresql://cdr@db.internal/cdr",
        port=9443,
        lockout_failures=3,
        access_log=False,
        trusted_proxies=("10.0.0.0/8", "192.0.2.1"),
        empty_download="header",
    )
    assert Settings.from_env(settings_environ(settings)) == settings


def test_a_trusted_proxy_that_is_not_an_address_is_a_usage_error(tmp_path):
    from typer.testing import CliRunner

    from cdrgate.cli import app

    database = f"sqlite:///{tmp_path / 'db.sqlite'}"
    args = ["serve", "--trusted-proxy", "proxy.example", "--database", database]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "--trusted-proxy: not an IP address or network: 'proxy.example'" in result.output


def test_a_page_whose_connection_is_lost_under_its_read_is_read_again_and_the_export_completes(
    fleet: Fleet,
):
    """A backend reading an export's page ends (pg_terminate_backend, as an operator's script
    or a pooler does): the page is read again on a new connection. Before, the download was
    answered 30003 with its random spent (its first page) or broken off mid-way (a later
    one), though the database was up."""
    base_url = fleet.single.base_url
    token = login(base_url, fleet.password_md5)["token"]
    random = get_random(base_url, token, "all", MONTH)
    received: list[bytes] = []
    failure: list[BaseException] = []

    def read_all() -> None:
        try:
            with httpx.stream(
                "GET", download_url(base_url, token, random, "all", MONTH), timeout=120
            ) as response:
                received.extend(response.iter_bytes())
        except httpx.HTTPError as exc:
            failure.append(exc)

    with (
        psycopg.connect(fleet.database_url) as locker,
        psycopg.connect(fleet.database_url, autocommit=True) as watcher,
    ):
        # The month's rows locked: the export's page read waits, in flight on its backend,
        # until that backend is ended under it. (The watcher is another session: a
        # transaction reads pg_stat_activity once, and the locker's stays open.)
        locker.execute("LOCK TABLE cdr IN ACCESS EXCLUSIVE MODE")
        reader = threading.Thread(target=read_all)
        reader.start()
        waiting: list[int] = []

        def a_page_waits() -> bool:
            waiting[:] = [
                row[0]
                for row in watcher.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = 'cdrgate' "
                    "AND wait_event_type = 'Lock'"
                ).fetchall()
            ]
            return bool(waiting)

        wait_until(a_page_waits, "a page read waiting on the lock")
        terminate_backends(*waiting)
        locker.rollback()  # the lock goes: the page read again now reads
    reader.join(120)
    assert failure == []
    assert b"".join(received).count(b"\n") == FLEET_CDRS + 1
