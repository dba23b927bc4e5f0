"""What the SDK's per-request deadline (client/_deadline.py) costs a download: the same full
export fetched with ``CdrClient.download`` through its own transport (every socket read cut to
what is left of the deadline) and through httpx's plain transport, in interleaved pairs.

    .venv/bin/python bench/client_deadline.py [--rows 200000] [--pairs 5]

Printed per pair: wall seconds and this process's CPU seconds (user + system: the client's
work, parsing and checking every row) for each; then the medians and their ratio. One
window covers the whole range, so each download is one request and one deadline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import timedelta

import benchlib as b
import httpx

from cdrgate.client import CdrClient
from cdrgate.testing import servers

START, END = "2000-01-01 00:00:00", "2099-12-31 23:59:59"
PASSWORD = "bench-client-deadline"  # a throwaway bench account, on loopback


def fetch(base: str, transport: httpx.BaseTransport | None) -> tuple[float, float, int]:
    with CdrClient(base, b.BENCH_USER, PASSWORD, window=timedelta(days=36500),
                   transport=transport) as pbx, open(os.devnull, "wb") as sink:  # fmt: skip
        cpu, wall = time.process_time(), time.perf_counter()
        result = pbx.download("all", START, END, sink)
        return time.perf_counter() - wall, time.process_time() - cpu, result.rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    b.say(f"== client_deadline | {b.machine()}")
    database = b.url(b.seeded_db(args.rows))
    b.run([b.CDRGATE, "api-user", "set", b.BENCH_USER, "--password-stdin",
           "--database", database], input=PASSWORD + "\n")  # fmt: skip
    env = {**os.environ, "CDRGATE_DATABASE": database}
    runs: dict[str, list[tuple[float, float]]] = {"deadline": [], "plain": []}
    with servers.running_server(["--log-level", "warning"], env, b.DATA / "serve.log") as served:
        fetch(served.base_url, None)  # warm the store's pages and the server
        for pair in range(args.pairs):
            order = ["deadline", "plain"] if pair % 2 == 0 else ["plain", "deadline"]
            for name in order:
                transport = None if name == "deadline" else httpx.HTTPTransport()
                wall, cpu, rows = fetch(served.base_url, transport)
                runs[name].append((wall, cpu))
                b.say(f"  pair {pair + 1} {name:8} {rows} rows  wall {wall:.2f} s  "
                      f"client CPU {cpu:.2f} s  load {b.load_average()}")  # fmt: skip
    medians = {
        name: (statistics.median(w for w, _ in r), statistics.median(c for _, c in r))
        for name, r in runs.items()
    }
    (dw, dc), (pw, pc) = medians["deadline"], medians["plain"]
    b.say(f"RESULT client_deadline: median wall {dw:.2f} s vs {pw:.2f} s ({dw / pw:.3f}x), "
          f"client CPU {dc:.2f} s vs {pc:.2f} s ({dc / pc:.3f}x), deadline vs plain httpx")  # fmt: skip


if __name__ == "__main__":
    main()
