"""wrk, a load generator written in C (Debian's package, LuaJIT scripts), as a cross-check of
the small-flows bench's Python generators (issue 17, twenty-fourth round): the same requests
from ``bench/small_flows.lua``, one connection, one token and one wrk thread a client.

Optional: CI does not install wrk, and ``small_flows.py`` needs it only for ``--client wrk``.
"""

from __future__ import annotations

import re
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import benchlib as b
import httpx

SCRIPT = Path(__file__).with_name("small_flows.lua")
_DONE = re.compile(
    r"WRK done=(\d+) errors=(\d+) requests=(\d+) socket_errors=(\d+) p99_us=(\d+) "
    r"duration_us=(\d+) first=(.*)"
)


@dataclass
class WrkRun:
    done: int  # answers checked good: GET / answers, or downloads (a flow each)
    errors: int  # answers that failed a check, and wrk's socket errors and timeouts
    first_error: str
    p99: float  # seconds: wrk's latency percentile is a request's, not a flow's
    elapsed: float  # seconds wrk ran its connections
    cpu: float  # wrk's own user + sys CPU seconds
    waits: int  # wrk's voluntary context switches (its threads went idle)


def require() -> str:
    found = shutil.which("wrk")
    if found is None:
        sys.exit("--client wrk needs wrk: apt-get install wrk")
    return found


def logins(base: str, md5: str, count: int) -> list[str]:
    """One token a wrk thread, as the Python generators log in one a client."""
    with httpx.Client(base_url=base, timeout=120) as client:
        return [b.login_md5(client, md5) for _ in range(count)]


def run(base: str, clients: int, seconds: float, kind: str, tokens: list[str]) -> WrkRun:
    """``kind`` (flow or trivial) from ``clients`` connections for ``seconds``; bounded by
    ``timeout`` as the bench's other phases are by their deadline."""
    command = [
        require(), "-t", str(clients), "-c", str(clients), "-d", f"{seconds:g}s",
        "--timeout", "30s", "-s", str(SCRIPT), base, "--", kind, *tokens,
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    finished = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    match = _DONE.search(finished.stdout)
    if finished.returncode != 0 or match is None:
        sys.exit(f"wrk failed ({finished.returncode}): {finished.stdout} {finished.stderr}")
    done, errors, _requests, socket_errors, p99_us, duration_us = map(int, match.groups()[:6])
    return WrkRun(
        done=done,
        errors=errors + socket_errors,
        first_error=match.group(7).strip(),
        p99=p99_us / 1e6,
        elapsed=duration_us / 1e6,
        cpu=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        waits=after.ru_nvcsw - before.ru_nvcsw,
    )
