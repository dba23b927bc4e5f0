"""Shared helpers for the bench scripts: seeded databases, a real `cdrgate serve` on loopback,
the login/get_random/download flow, and min/median/percentile reporting.

Every script seeds its own data under bench/data/ (gitignored) with `cdrgate seed`, measures
several runs and reports each figure beside a reference measured in the same run, so the
ratio survives a noisy, shared machine.
"""

from __future__ import annotations

import hashlib
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from cdrgate.testing import servers

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
BIN = Path(sys.executable).parent
CDRGATE = str(BIN / "cdrgate")
SQLITE3 = "/usr/bin/sqlite3"
API = "/api/v1.1.0"
BENCH_USER = "bench"

# The 14 Yeastar columns rebuilt from the stored columns, for the sqlite3 shell references.
SHELL_COLUMNS = (
    "callid, strftime('%Y-%m-%d %H:%M:%S', ts, 'unixepoch') AS timestart, callfrom, callto, "
    "callduraction, talkduraction, srctrunkname, dsttrunkname, status, type, pincode, "
    "recording, didnumber, sn"
)


def _stat(pid: int, thread: int | None = None) -> list[str]:
    """/proc/PID/stat (a thread's: /proc/PID/task/TID/stat) after the command name, whose
    parentheses may hold spaces: [1] the parent's pid, [11] and [12] user and system ticks,
    [13] and [14] those of the children it reaped."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    with open(path) as stat:
        return stat.read().rsplit(")", 1)[1].split()


def _seconds(ticks: int) -> float:
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, thread: int | None = None, *, reaped: bool = False) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far, from /proc: a
    server's, or a PostgreSQL backend's (the cluster must run on this machine). ``thread``:
    that thread's alone; ``reaped``: with the children it waited for (a postmaster's ended
    backends)."""
    fields = _stat(pid, thread)
    return _seconds(sum(int(value) for value in fields[11 : 15 if reaped else 13]))


def system_seconds(pid: int, thread: int | None = None) -> float:
    """The system part of ``cpu_seconds``."""
    return _seconds(int(_stat(pid, thread)[12]))


def parent_pid(pid: int) -> int:
    return int(_stat(pid)[1])


def voluntary_switches(pid: int, thread: int | None = None) -> int:
    """How often the process (or thread) gave up the CPU to wait: an event loop going idle in
    its selector, or blocking."""
    path = f"/proc/{pid}/status" if thread is None else f"/proc/{pid}/task/{thread}/status"
    with open(path) as status:
        for line in status:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise ValueError(f"{path} has no voluntary_ctxt_switches")


def load_average() -> str:
    """The machine's 1, 5 and 15 minute load averages, as a bench line prints them."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def say(text: str) -> None:
    print(text, flush=True)


def machine() -> str:
    cpu = "?"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()
    return (
        f"{platform.node()} | {os.cpu_count()} cpu ({cpu}) | Python {platform.python_version()} "
        f"| SQLite {sqlite_version()} | load avg {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )


def sqlite_version() -> str:
    import sqlite3

    return sqlite3.sqlite_version


def sqlite_cli() -> str:
    """The Debian sqlite3 shell (installed on demand when running as root)."""
    if not Path(SQLITE3).exists():
        if os.geteuid() != 0:
            sys.exit("bench needs /usr/bin/sqlite3: apt-get install sqlite3")
        subprocess.run(["apt-get", "install", "-y", "-q", "sqlite3"], check=True)
    return SQLITE3


# -- timing -----------------------------------------------------------------------------------


def settle_disk() -> None:
    """Write every dirty page out before a timed run: the kernel's write-back of the last
    run's files (a 700 MB store, the seed's, a template's copy) otherwise lands inside the
    next run's timing, on either side (bench/RESULTS.md, thirty-first round)."""
    os.sync()


def timed(func: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        settle_disk()
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return times


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def spread(times: list[float]) -> str:
    """min / median, plus the max-min spread as the noise of this run."""
    low, mid = min(times), statistics.median(times)
    noise = (max(times) - low) / low * 100 if low else 0.0
    return f"min {low:.3f}s median {mid:.3f}s (n={len(times)}, spread {noise:.0f}%)"


def report(name: str, times: list[float], ref_name: str, ref_times: list[float]) -> float:
    ratio = min(times) / min(ref_times)
    say(f"  {ref_name:<34} {spread(ref_times)}")
    say(f"  {name:<34} {spread(times)}")
    say(f"  ratio {name} / {ref_name} (min/min): {ratio:.2f}x")
    return ratio


# -- data -------------------------------------------------------------------------------------


def run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=True, text=True, **kwargs)  # type: ignore[call-overload]


def seeded_db(count: int, seed: int = 1) -> Path:
    """bench/data/seed-COUNT.db made by `cdrgate seed` (kept between runs; a marker file says
    the seed finished)."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"seed-{count}-{seed}.db"
    done = path.with_suffix(".done")
    if path.exists() and done.exists():
        return path
    for stale in DATA.glob(path.name + "*"):
        stale.unlink()
    say(f"  seeding {count} CDRs into {path.relative_to(ROOT)} ...")
    started = time.perf_counter()
    run([CDRGATE, "seed", "--count", str(count), "--seed", str(seed), "--database", url(path)])
    checkpoint(path)
    say(f"  seeded in {time.perf_counter() - started:.1f}s")
    done.write_text("ok\n")
    return path


def url(path: Path) -> str:
    return f"sqlite:///{path}"


def checkpoint(path: Path) -> None:
    """Fold the WAL into the main file so the shell and the server read the same thing."""
    run([sqlite_cli(), str(path), "PRAGMA wal_checkpoint(TRUNCATE);"], stdout=subprocess.DEVNULL)


def set_bench_user(database_url: str) -> str:
    """A fresh random password for the bench API user; returns its md5 (what clients send)."""
    password = secrets.token_urlsafe(16)
    run(
        [CDRGATE, "api-user", "set", BENCH_USER, "--password-stdin", "--database", database_url],
        input=password + "\n",
        stderr=subprocess.DEVNULL,
    )
    return hashlib.md5(password.encode()).hexdigest()


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# -- server -----------------------------------------------------------------------------------


@dataclass
class Server:
    """A running server (from the one launcher, cdrgate.testing.servers) and the md5 of the
    bench user's password."""

    served: servers.Server
    md5: str

    @property
    def base(self) -> str:
        return self.served.base_url

    def peak_rss_mb(self) -> float:
        return self.served.peak_rss_mib()

    def client(self, timeout: float = 120.0) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=timeout, verify=False)


@contextmanager
def serve(
    database_url: str, *extra: str, env: dict[str, str] | None = None, scheme: str = "http"
) -> Iterator[Server]:
    """`cdrgate serve` on 127.0.0.1 and a free port; stopped (and waited for) on exit."""
    md5 = set_bench_user(database_url)
    DATA.mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, **(env or {}), "CDRGATE_DATABASE": database_url}
    args = ["--log-level", "warning", *extra]
    with servers.running_server(args, environment, DATA / "serve.log", scheme=scheme) as served:
        yield Server(served, md5)


# -- the API flow -----------------------------------------------------------------------------


def login(client: httpx.Client, server: Server) -> str:
    return login_md5(client, server.md5)


def login_md5(client: httpx.Client, md5: str) -> str:
    """The bench user's token, its password given as the API takes it (md5)."""
    body = {"username": BENCH_USER, "password": md5, "port": "8260"}
    answer = client.post(f"{API}/login", json=body).json()
    if answer.get("status") != "Success":
        raise RuntimeError(f"login failed: {answer}")
    return str(answer["token"])


def get_random(client: httpx.Client, token: str, extid: str, start: str, end: str) -> str:
    body = {"extid": extid, "starttime": start, "endtime": end}
    answer = client.post(f"{API}/cdr/get_random", params={"token": token}, json=body).json()
    if answer.get("status") != "Success":
        raise RuntimeError(f"get_random failed: {answer}")
    return str(answer["random"])


def download_params(token: str, random: str, extid: str, start: str, end: str) -> dict[str, str]:
    return {"extid": extid, "starttime": start, "endtime": end, "token": token, "random": random}


def curl_download(server: Server, params: dict[str, str], out: Path) -> None:
    """The download with curl (a C client), so the client side does not limit the figure."""
    query = str(httpx.QueryParams(params))
    run(["curl", "-sSf", "-o", str(out), f"{server.base}{API}/cdr/download?{query}"])


def require_tools(*names: str) -> None:
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        sys.exit(f"missing tools: {', '.join(missing)}")


# -- loading references -----------------------------------------------------------------------


def yeastar_csv(db: Path) -> Path:
    """The store of ``db`` as a Yeastar CDR file (header + the stored lines, download order)."""
    import sqlite3

    out = db.with_suffix(".csv")
    if out.exists():
        return out
    partial = out.with_suffix(".partial")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn, open(partial, "w") as handle:
        from cdrgate.cdr import CSV_HEADER

        handle.write(CSV_HEADER)
        cursor = conn.execute("SELECT line FROM cdr ORDER BY ts, callid, sn")
        while rows := cursor.fetchmany(10000):
            handle.write("".join(row[0] for row in rows))
    partial.rename(out)
    return out


def shell_import(csv_file: Path, target: Path) -> None:
    """Reference: the sqlite3 shell's `.import` into a plain 14-column table (no index)."""
    from cdrgate.cdr import CSV_COLUMNS

    fresh(target)
    columns = ", ".join(f"{name} TEXT" for name in CSV_COLUMNS)
    script = f"CREATE TABLE plain ({columns});\n.import --csv --skip 1 {csv_file} plain\n"
    run([sqlite_cli(), str(target)], input=script)


def fresh(path: Path) -> None:
    for stale in path.parent.glob(path.name + "*"):
        stale.unlink()


def migrated_copy(target: Path, cdrgate: str = CDRGATE) -> str:
    """An empty database at ``target`` migrated by ``cdrgate`` (copied from a template, so
    timing a command does not include the migrations); returns its URL."""
    if cdrgate == CDRGATE:
        # Named after what shapes an empty store (its schema, the page size a new file gets),
        # so a template left by an earlier build is not taken for this one's.
        from cdrgate.storage.schema import HEAD
        from cdrgate.storage.sqlite_head import NEW_STORE_PAGE_SIZE

        suffix = f"-{HEAD}-{NEW_STORE_PAGE_SIZE}"
    else:
        suffix = "-" + hashlib.sha256(cdrgate.encode()).hexdigest()[:8]
    template = DATA / f"empty-migrated{suffix}.db"
    if not template.exists():
        run([cdrgate, "db", "upgrade", "--database", url(template)], stdout=subprocess.DEVNULL)
        checkpoint(template)
    fresh(target)
    shutil.copyfile(template, target)
    return url(target)
