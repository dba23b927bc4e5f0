"""Long JSON query-API reads beside paged downloads: does a download wait behind them?

    PYTHONPATH=<build's src> .venv/bin/python bench/query_beside_downloads.py --database URL
        [--readers 4] [--downloads 6] [--seconds 20] [--read /v1/stats?group=extension]
        [--timeout 60]

URL: a seeded store (``cdrgate seed --count 1000000``: the year 2026). One server, one worker.
First ``--downloads`` downloads of a week of every extension (``all``: a paged export, its
pages read on the downloads' pool), one after another, alone: the reference. Then, for
``--seconds``, ``--readers`` clients each repeat ``--read`` (a long read on the same pool: a
year's stats) without pause, alone; then for ``--seconds`` again while the same downloads run
one after another from the second second on, as many as the time allows. Prints the downloads'
times (median, p90, max) and outcomes in both phases, and the readers' reads in both (answers,
per second over the phase, median time). Bounded: every request has ``--timeout``; a phase
ends after ``--seconds`` and its requests then.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import threading
import time

import benchlib as b
import httpx

WEEKS = [(f"2026-0{m}-01 00:00:00", f"2026-0{m}-07 23:59:59") for m in range(1, 10)]


def downloads(
    server: b.Server, count: int, timeout: float, until: float = float("inf")
) -> list[tuple[float, str]]:
    """``count`` downloads of a week of ``all``, one after another (none started after
    ``until``, a ``time.perf_counter``): (seconds, outcome) each."""
    done: list[tuple[float, str]] = []
    with server.client(timeout=timeout) as client:
        token = b.login(client, server)
        for index in range(count):
            if time.perf_counter() >= until:
                break
            week = WEEKS[index % len(WEEKS)]
            started = time.perf_counter()
            try:
                random = b.get_random(client, token, "all", *week)
                params = b.download_params(token, random, "all", *week)
                response = client.get(f"{b.API}/cdr/download", params=params)
                if response.headers.get("content-type", "").startswith("text/csv"):
                    outcome = f"ok {response.text.count(chr(10)) - 1} rows"
                else:
                    outcome = f"errno {response.json().get('errno')}"
            except httpx.HTTPError as exc:
                outcome = f"broken ({type(exc).__name__})"
            done.append((time.perf_counter() - started, outcome))
    return done


def reader(
    server: b.Server, target: str, timeout: float, stop: threading.Event,
    answers: collections.Counter[str], seconds: list[float],
) -> None:  # fmt: skip
    with server.client(timeout=timeout) as client:
        token = b.login(client, server)
        auth = {"Authorization": f"Bearer {token}"}
        while not stop.is_set():
            started = time.perf_counter()
            try:
                status = str(client.get(target, headers=auth).status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            seconds.append(time.perf_counter() - started)
            answers[status] += 1


def show(name: str, done: list[tuple[float, str]]) -> None:
    times = sorted(t for t, _ in done)
    outcomes = collections.Counter(outcome.split(" ")[0] for _, outcome in done)
    b.say(
        f"  {name}: {len(times)} downloads, median {statistics.median(times):.2f} s, "
        f"p90 {b.percentile(times, 90):.2f}, max {times[-1]:.2f}  {dict(outcomes)}"
    )


def readers_for(
    server: b.Server, args: argparse.Namespace, beside: bool
) -> tuple[list[tuple[float, str]], str]:
    """``--readers`` readers for ``--seconds`` (``beside``: with downloads one after another
    from the second second on): the downloads, and the readers' figures."""
    stop = threading.Event()
    answers: collections.Counter[str] = collections.Counter()
    seconds: list[float] = []
    readers = [
        threading.Thread(
            target=reader, args=(server, args.read, args.timeout, stop, answers, seconds)
        )
        for _ in range(args.readers)
    ]
    started = time.perf_counter()
    for thread in readers:
        thread.start()
    done: list[tuple[float, str]] = []
    if beside:
        time.sleep(1.0)  # the readers at work
        done = downloads(server, 1000, args.timeout, started + args.seconds)
    stop.wait(max(0.0, started + args.seconds - time.perf_counter()))
    stop.set()
    for thread in readers:
        thread.join()
    elapsed = time.perf_counter() - started
    figures = (
        f"{dict(answers)}  {len(seconds) / elapsed:.2f} reads/s  "
        f"median {statistics.median(seconds):.2f} s  max {max(seconds):.2f} s  "
        f"load {os.getloadavg()[0]:.1f}"
    )
    return done, figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True, help="a seeded store's URL")
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--downloads", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--read", default="/v1/stats?group=extension")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    b.say(f"== query_beside_downloads | {args.readers} x {args.read} | {b.machine()}")
    with b.serve(args.database) as server:
        downloads(server, 1, args.timeout)  # warm: the key, the pools, the plans
        show("downloads alone", downloads(server, args.downloads, args.timeout))
        _, alone = readers_for(server, args, beside=False)
        b.say(f"  {args.readers} readers alone: {alone}")
        done, beside = readers_for(server, args, beside=True)
        show(f"downloads beside {args.readers} readers", done)
        b.say(f"  {args.readers} readers beside them: {beside}")


if __name__ == "__main__":
    main()
