"""Mixed Yeastar client flows against a running server, for the soak test and bench/soak.py.

Each worker repeats what real integrations do (login, heartbeat, get_random, download in
both API versions, logout) plus the mistakes they make (replayed random, stale token, wrong
password from another address), and checks every answer. Memory of the server process is
sampled from /proc after every finished flow, so "once warm" means a share of the work done,
not of the time spent: the same soak means the same thing on a fast or a loaded machine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

START, END = "2026-05-01 00:00:00", "2026-05-31 23:59:59"
GUESSER_IP = "127.0.0.9"  # wrong passwords come from here, so its lockout hurts no one else
MAX_ERRORS_KEPT = 20


@dataclass
class SoakReport:
    seconds: float = 0.0
    flows: int = 0
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    rss_kib: list[int] = field(default_factory=list)  # one sample per finished flow

    def rss_growth_kib(self) -> int:
        """RSS at the end minus RSS once warm (after the first half of the flows), each the
        lowest of a few samples (a twentieth of them).

        The first half fills the pools, caches and arenas, at a pace that depends on how loaded
        the machine is; a leak keeps growing through the second half as well. The lowest of a
        few: one sample taken while a big answer was being built is a peak that is given back,
        not growth (a suite run's samples went 86 -> 142 -> 86 MB; one such peak at the end
        alone failed the bound)."""
        samples = self.rss_kib
        if len(samples) < 4:
            raise ValueError(f"too few flows to judge memory: {len(samples)}")
        few = max(1, len(samples) // 20)
        middle = len(samples) // 2
        return min(samples[-few:]) - min(samples[middle : middle + few])


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class _Worker:
    def __init__(
        self,
        base_url: str,
        username: str,
        password_md5: str,
        report: SoakReport,
        lock: threading.Lock,
    ) -> None:
        self.http = httpx.Client(base_url=base_url, verify=False, timeout=60)
        guesser = httpx.HTTPTransport(local_address=GUESSER_IP, verify=False)
        self.guesser = httpx.Client(base_url=base_url, transport=guesser, timeout=60)
        self.username = username
        self.password_md5 = password_md5
        self.report = report
        self.lock = lock

    def close(self) -> None:
        self.http.close()
        self.guesser.close()

    def expect(
        self, what: str, ok: Callable[[httpx.Response], bool], response: httpx.Response
    ) -> None:
        with self.lock:
            self.report.requests += 1
            if not ok(response):
                self.report.error_count += 1
                if len(self.report.errors) < MAX_ERRORS_KEPT:
                    self.report.errors.append(
                        f"{what}: {response.status_code} {response.text[:200]}"
                    )

    def api(
        self, version: str, endpoint: str, token: str | None = None, **body: Any
    ) -> httpx.Response:
        params = {"token": token} if token is not None else None
        return self.http.post(f"/api/{version}/{endpoint}", params=params, json=body)

    def flow(self, index: int) -> None:
        success = _envelope("Success")
        login = self.api(
            "v1.1.0", "login", username=self.username, password=self.password_md5, port="8260"
        )
        self.expect("login", success, login)
        token = login.json().get("token", "")
        self.expect(
            "heartbeat", success, self.api("v1.1.0", "heartbeat", token, url="x", urltag="0")
        )
        for version, selector in (("v1.1.0", "extid"), ("v2.0.0", "number")):
            answer = self.api(version, "cdr/get_random", token, **{selector: "all"},
                              starttime=START, endtime=END)  # fmt: skip
            self.expect("get_random", success, answer)
            link = (f"/api/{version}/cdr/download?{selector}=all&starttime={START}&endtime={END}"
                    f"&token={token}&random={answer.json().get('random', '')}")  # fmt: skip
            self.expect("download", _is_csv, self.http.get(link))
            self.expect("replay", _envelope("Failed", "20020"), self.http.get(link))
        self.expect("logout", success, self.api("v1.1.0", "logout", token))
        self.expect(
            "stale token", _envelope("Failed", "20004"), self.api("v1.1.0", "heartbeat", token)
        )
        if index % 5 == 0:
            wrong = self.guesser.post(
                "/api/v1.1.0/login", json={"username": self.username, "password": "0" * 32}
            )
            self.expect("wrong login", _failed_login, wrong)


def _envelope(status: str, errno: str | None = None) -> Callable[[httpx.Response], bool]:
    def check(response: httpx.Response) -> bool:
        if response.status_code != 200 or not response.headers.get("content-type", "").startswith(
            "application/json"
        ):
            return False
        body = response.json()
        return body.get("status") == status and (errno is None or body.get("errno") == errno)

    return check


def _is_csv(response: httpx.Response) -> bool:
    return (
        response.status_code == 200
        and response.headers.get("content-type", "").startswith("text/csv")
        and response.text.startswith("callid,")
    )


def _failed_login(response: httpx.Response) -> bool:
    return _envelope("Failed", "20003")(response) or _envelope("Failed", "20002")(response)


def run_soak(
    base_url: str,
    password_md5: str,
    *,
    seconds: float | None = None,
    flows: int | None = None,
    workers: int = 4,
    pid: int | None = None,
    username: str = "api",
) -> SoakReport:
    """Run flows on ``workers`` threads for ``seconds`` (the bench) or exactly ``flows`` in all
    (the tests: a fixed amount of work, whatever the machine's speed)."""
    if (seconds is None) == (flows is None):
        raise ValueError("give seconds or flows, not both")
    report = SoakReport()
    lock = threading.Lock()
    started = time.monotonic()
    deadline = started + seconds if seconds is not None else None
    claimed = 0

    def claim() -> int | None:
        nonlocal claimed
        with lock:
            if flows is not None and claimed >= flows:
                return None
            if deadline is not None and time.monotonic() >= deadline:
                return None
            claimed += 1
            return claimed - 1

    def work() -> None:
        worker = _Worker(base_url, username, password_md5, report, lock)
        try:
            while (index := claim()) is not None:
                worker.flow(index)
                sample = rss_kib(pid) if pid is not None else None
                with lock:
                    report.flows += 1
                    if sample is not None:
                        report.rss_kib.append(sample)
        finally:
            worker.close()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(work) for _ in range(workers)]:
            future.result()
    report.seconds = time.monotonic() - started
    return report
