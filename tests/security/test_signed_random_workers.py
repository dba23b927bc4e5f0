"""A signed random raced through `cdrgate serve --workers 2` on one SQLite file: each process
checks the tag with the database's key, and the spend's primary key lets one download win."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from cdrgate.errors import Errno
from tests.conftest import Flow
from tests.servers import PASSWORD_MD5

RACERS = 24
DAY = ("2026-05-28 00:00:00", "2026-05-28 23:59:59")


def test_a_signed_random_raced_through_two_workers_yields_exactly_one_csv(start_server):
    server = start_server("--workers", "2")
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        flow = Flow(http)
        token = flow.login(password=PASSWORD_MD5)["token"]
        # A few randoms first, so both workers have read the key through their own requests.
        for _ in range(4):
            assert flow.get_random(token, "all", *DAY)["status"] == "Success"
        random = flow.get_random(token, "all", *DAY)["random"]
        link = flow.download_url(token, random, "all", *DAY)
    assert len(random) == 32

    start = threading.Barrier(RACERS)

    def attempt(_: int) -> httpx.Response:
        with httpx.Client(base_url=server.base_url, timeout=60) as own:  # a connection each
            start.wait(timeout=30)
            return own.get(link)

    with ThreadPoolExecutor(RACERS) as pool:
        answers = list(pool.map(attempt, range(RACERS)))
    files = [a for a in answers if a.headers["content-type"].startswith("text/csv")]
    refused = [a.json() for a in answers if a not in files]
    assert len(files) == 1 and files[0].text.startswith("callid,")
    assert refused == [{"status": "Failed", "errno": Errno.CDR_RANDOM_INVALID.value}] * (RACERS - 1)
