"""The one way to start a real ``cdrgate serve`` process on loopback and stop it again."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

CLI = [sys.executable, "-m", "cdrgate"]
# The machine running the tests may be shared and slow: starting is given this long.
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


class ServerStartError(RuntimeError):
    """``cdrgate serve`` exited or did not answer in time; the message holds its output."""


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    scheme: str
    log: Path
    directory: Path  # its working directory: --self-signed writes its certificate here
    env: dict[str, str]
    # The port the server picked (it is started with --port 0): known once it listens.
    _port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server's port is known once it listens: wait_until_up first")
        return self._port

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        return self.env["CDRGATE_DATABASE"]

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def peak_rss_mib(self) -> float:
        """VmHWM: the peak resident set of the main process since it started."""
        return _status_kib(self.process.pid, "VmHWM:") / 1024

    def worker_pids(self) -> list[int]:
        """Children running a uvicorn worker (``--workers N`` spawns them with multiprocessing)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.process.pid and b"spawn_main" in cmdline:
                pids.append(int(entry.name))
        return pids

    def stop(self) -> None:
        """Terminate (kill if it hangs) and reap, so no zombie or open pipe outlives the test."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)


def start_server(
    args: Sequence[str],
    env: Mapping[str, str],
    log: Path,
    *,
    scheme: str = "http",
    cwd: Path | None = None,
    wait: bool = True,
) -> Server:
    """Start ``cdrgate serve`` on 127.0.0.1 and a free port, in ``cwd`` (default: the log's
    directory), output to ``log``; ``env`` must name the database (CDRGATE_DATABASE).

    With ``wait`` (the default) it returns once the server answers HTTP; without, call
    :func:`wait_until_up` later (several servers can then start at once); its ``port`` and
    ``base_url`` are known from then on."""
    directory = cwd if cwd is not None else log.parent
    # --port 0: the server's own bind picks the port. A port picked here and handed over would
    # be free only until then: another process (a parallel suite) could take it in between.
    command = [*CLI, "serve", "--host", "127.0.0.1", "--port", "0", *args]
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            command, env=dict(env), stdout=log_file, stderr=subprocess.STDOUT, cwd=directory
        )
    server = Server(process, scheme, log, directory, dict(env))
    if wait:
        wait_until_up(server)
    return server


def wait_until_up(server: Server, timeout: float = READY_TIMEOUT_S) -> None:
    """Return once ``server`` answers any HTTP request; stop it and raise if it cannot."""
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise ServerStartError("cdrgate serve exited:\n" + server.output())
        if server._port is None:
            server._port = listening_port(server.process.pid)
        if server._port is not None and _answers(server.base_url):
            return
        if time.monotonic() > deadline:
            server.stop()
            raise ServerStartError("cdrgate serve did not start:\n" + server.output())
        time.sleep(0.1)


def _answers(base_url: str) -> bool:
    try:
        # verify=False: a --self-signed server is up once it answers at all.
        httpx.get(base_url + "/", timeout=1, verify=False)
        return True
    except httpx.TransportError:
        return False


@contextmanager
def running_server(
    args: Sequence[str], env: Mapping[str, str], log: Path, *, scheme: str = "http"
) -> Iterator[Server]:
    """:func:`start_server`, stopped (and reaped) on exit."""
    server = start_server(args, env, log, scheme=scheme)
    try:
        yield server
    finally:
        server.stop()


def listening_port(pid: int) -> int | None:
    """The TCP port process ``pid`` listens on, or None while it listens on none.

    Read from /proc: the process's socket inodes, matched against the kernel's table of TCP
    sockets in the LISTEN state. (Its log names the port only at --log-level info.)"""
    try:
        inodes = set()
        for entry in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(entry)
            except FileNotFoundError:  # closed meanwhile
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
        for table in ("tcp", "tcp6"):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == TCP_LISTEN and fields[9] in inodes:
                    return int(fields[1].rsplit(":", 1)[1], 16)
    except FileNotFoundError:  # the process is gone: the caller sees it exit
        pass
    return None


TCP_LISTEN = "0A"  # the state column of /proc/net/tcp


def _status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1])
    raise LookupError(f"{field} not in /proc/{pid}/status")
