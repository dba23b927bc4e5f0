"""Reliability under slow readers: 60 clients each streaming a full export at ~2 KB/s while 4
clients run small flows (login once, then get_random + download of one extension over one
day), for two minutes. Prints the flows' p50/p99 beside the same flows measured first without
the slow readers (same server, same run), and the SQLite WAL size over time.

    .venv/bin/python bench/slow_readers.py [--rows 200000] [--readers 60] [--seconds 120]
                                          [--reference-seconds 20]

Before the paged export, each slow reader held a pooled connection and a snapshot for its
whole life: past the pool size every request waited 30 s and failed, and the WAL grew
without bound (no checkpoint can pass a pinned snapshot). Bounded: it stops by itself.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import threading
import time
from pathlib import Path

import benchlib as b
import httpx

DAY_START, DAY_END = "2026-03-02 00:00:00", "2026-03-02 23:59:59"
YEAR_START, YEAR_END = "2026-01-01 00:00:00", "2026-12-31 23:59:59"


def flows(server: b.Server, seconds: float, workers: int) -> tuple[list[float], int]:
    """Small flows for ``seconds``: each latency (get_random + download), and the errors."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def work(index: int) -> None:
        nonlocal errors
        ext = str(1000 + index)
        with server.client(timeout=60) as client:
            token = b.login(client, server)
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    random = b.get_random(client, token, ext, DAY_START, DAY_END)
                    params = b.download_params(token, random, ext, DAY_START, DAY_END)
                    response = client.get(f"{b.API}/cdr/download", params=params)
                    ok = response.headers.get("content-type", "").startswith("text/csv")
                except Exception:
                    ok = False
                with lock:
                    if ok:
                        latencies.append(time.perf_counter() - started)
                    else:
                        errors += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors


def slow_reader(server: b.Server, stop: threading.Event, received: list[int]) -> None:
    with server.client() as client:
        token = b.login(client, server)
        random = b.get_random(client, token, "all", YEAR_START, YEAR_END)
    query = str(httpx.QueryParams(b.download_params(token, random, "all", YEAR_START, YEAR_END)))
    host, port = server.base.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(f"GET {b.API}/cdr/download?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    sock.settimeout(5)
    total = 0
    try:
        while not stop.wait(0.5):
            chunk = sock.recv(1024)
            if not chunk:
                break
            total += len(chunk)
    except OSError:
        pass
    finally:
        sock.close()
        received.append(total)


def wal_size(path: Path) -> int:
    wal = Path(str(path) + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def summary(name: str, latencies: list[float], errors: int, seconds: float) -> str:
    if not latencies:
        return f"{name:<28} no flow completed, {errors} errors"
    ms = sorted(x * 1000 for x in latencies)
    return (
        f"{name:<28} {len(ms) / seconds:6.1f} flows/s  p50 {statistics.median(ms):7.1f} ms  "
        f"p99 {b.percentile(ms, 99):7.1f} ms  errors {errors}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--readers", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--reference-seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    b.say(b.machine())
    seeded = b.seeded_db(args.rows)
    work = b.DATA / "slow-readers.db"
    b.fresh(work)
    shutil.copy(seeded, work)
    env = {
        "CDRGATE_EXPORT_MAX_CONCURRENT": str(args.readers + 2 * args.workers),
        "CDRGATE_EXPORT_MAX_PER_ACCOUNT": str(args.readers + 2 * args.workers),
    }
    with b.serve(b.url(work), env=env) as server:
        reference = flows(server, args.reference_seconds, args.workers)
        stop = threading.Event()
        received: list[int] = []
        readers = [
            threading.Thread(target=slow_reader, args=(server, stop, received))
            for _ in range(args.readers)
        ]
        for thread in readers:
            thread.start()
        wal: list[int] = []
        sampler_stop = threading.Event()

        def sample() -> None:
            while not sampler_stop.wait(5):
                wal.append(wal_size(work))

        sampler = threading.Thread(target=sample)
        sampler.start()
        loaded = flows(server, args.seconds, args.workers)
        stop.set()
        for thread in readers:
            thread.join()
        sampler_stop.set()
        sampler.join()
        rss = server.peak_rss_mb()
    b.say(summary("small flows alone", *reference, args.reference_seconds))
    b.say(summary(f"with {args.readers} slow readers", *loaded, args.seconds))
    if reference[0] and loaded[0]:
        ratio = b.percentile(sorted(loaded[0]), 99) / b.percentile(sorted(reference[0]), 99)
        b.say(f"p99 with / without slow readers: {ratio:.2f}x")
    b.say(
        f"slow readers: {len(received)} ran, {sum(received) / 1024:.0f} KiB read in all "
        f"(~{sum(received) / max(1, len(received)) / args.seconds:.0f} B/s each)"
    )
    b.say("WAL size every 5 s (KiB): " + " ".join(str(size // 1024) for size in wal))
    b.say(f"server peak RSS {rss:.0f} MB; pid {os.getpid()} done")


if __name__ == "__main__":
    main()
