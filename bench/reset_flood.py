"""Honest flows during a connect + request + reset flood from one address (fifteenth round).

    .venv/bin/python bench/reset_flood.py [--base SRC] [--pairs 3] [--seconds 10] [--threads 6]

Flood threads connect, send a get_random with an unknown token and close with RST
(SO_LINGER 0), as fast as they can; meanwhile an honest client runs login + get_random +
download on a fresh connection every 0.2 s. Reported per run: the flood's connections, the
server's CPU time per flood connection (/proc/PID/stat), the honest flows' median and worst
time, and the load average. With --base (another checkout's src/, e.g. a detached worktree of
main), runs alternate base, this tree, base, ... in one process, so both see the same load.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import struct
import threading
import time
from pathlib import Path

import benchlib as b
import httpx

DAY = {"extid": "1000", "starttime": "2026-01-02 00:00:00", "endtime": "2026-01-02 23:59:59"}
BODY = b'{"extid": "1000", "starttime": "2026-01-02 00:00:00", "endtime": "2026-01-02 23:59:59"}'
FLOOD_REQUEST = (
    b"POST /api/v1.1.0/cdr/get_random?token=%s HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (b"0" * 32, len(BODY), BODY)
)
RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


def flood(port: int, stop: threading.Event, counts: list[int], slot: int) -> None:
    while not stop.is_set():
        try:
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(FLOOD_REQUEST)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET)
            sock.close()
            counts[slot] += 1
        except OSError:
            time.sleep(0.001)


def honest_flow(server: b.Server) -> float:
    """Seconds for login + get_random + download on a fresh connection (inf if it failed)."""
    started = time.perf_counter()
    try:
        with server.client(timeout=30) as client:
            token = b.login(client, server)
            random = b.get_random(client, token, *DAY.values())
            params = b.download_params(token, random, *DAY.values())
            answer = client.get(f"{b.API}/cdr/download", params=params)
            if answer.status_code != 200 or b"status" in answer.content[:20]:
                return float("inf")
    except (httpx.HTTPError, RuntimeError, ValueError):  # a reset, a timeout, an errno
        return float("inf")
    return time.perf_counter() - started


def one_run(
    label: str, database_url: str, env: dict[str, str], seconds: float, threads: int
) -> None:
    with b.serve(database_url, env=env) as server:
        honest_flow(server)  # warm
        port = server.served.port
        pid = server.served.process.pid
        stop, counts = threading.Event(), [0] * threads
        workers = [
            threading.Thread(target=flood, args=(port, stop, counts, i)) for i in range(threads)
        ]
        load = b.load_average()
        cpu_before, started = b.cpu_seconds(pid), time.monotonic()
        for worker in workers:
            worker.start()
        times = []
        while time.monotonic() - started < seconds:
            times.append(honest_flow(server))
            time.sleep(0.2)
        stop.set()
        for worker in workers:
            worker.join()
        time.sleep(1)  # what is still queued is served or closed
        cpu = b.cpu_seconds(pid) - cpu_before
        flooded = sum(counts)
        b.say(
            f"  {label:6} load {load}: flood {flooded} connections, server CPU {cpu:.2f} s "
            f"= {1e6 * cpu / max(flooded, 1):.0f} us each; honest flows {len(times)}, "
            f"median {statistics.median(times):.2f} s, worst {max(times):.2f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", help="another checkout's src/ directory to compare against")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=6)
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()
    database_url = b.url(b.seeded_db(args.rows))
    builds = [("this", {})]
    if args.base:
        builds.insert(0, ("base", {"PYTHONPATH": str(Path(args.base).resolve())}))
    b.say(f"reset flood: {b.machine()}, {args.threads} flood threads, {args.seconds:.0f} s runs")
    for _ in range(args.pairs):
        for label, env in builds:
            one_run(label, database_url, env, args.seconds, args.threads)


if __name__ == "__main__":
    main()
