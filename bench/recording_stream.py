"""Recording download: a file larger than 100 MB streamed with flat server memory.

    .venv/bin/python bench/recording_stream.py [--small-mb 8] [--big-mb 160] [--repeat 3]

Two recordings (--small-mb and --big-mb) under a dated sub-folder of bench/data/recordings,
each named by a CDR. For each size, a fresh `cdrgate serve --recordings` process serves
get_random + download to curl, the copy is compared byte for byte (sha256), and the server's
peak RSS (VmHWM) is read. Flat memory = the big file's peak within 10 % of the small one's.
Reference for the speed, same run: `cp` of the same file.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import benchlib as b

from cdrgate.cdr import CdrRecord
from cdrgate.ingest.store import store_records
from cdrgate.storage import schema
from cdrgate.storage.db import Database

FOLDER = b.DATA / "recordings"


def make_file(path: Path, megabytes: int) -> None:
    if path.exists() and path.stat().st_size == megabytes << 20:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(1 << 20)
    with open(path, "wb") as out:
        for _ in range(megabytes):
            out.write(block)


def cdr(name: str, callid: str) -> CdrRecord:
    return CdrRecord(
        callid, "2026-05-28 10:00:00", "1000", "1001", 60, 50, "", "", "ANSWERED",
        "Internal", "", name, "", "369300000000",
    )  # fmt: skip


def database(names: list[str]) -> str:
    path = b.DATA / "recordings.db"
    b.fresh(path)
    db = Database(b.url(path))
    schema.upgrade(db)
    store_records(db, [cdr(name, f"1780000000.{i}") for i, name in enumerate(names)])
    db.dispose()
    return b.url(path)


def fetch(server: b.Server, name: str, out: Path) -> None:
    with server.client() as client:
        token = b.login(client, server)
        answer = client.post(
            f"{b.API}/recording/get_random", params={"token": token}, json={"recording": name}
        ).json()
    query = f"recording={name}&token={token}&random={answer['random']}"
    b.run(["curl", "-sSf", "-o", str(out), f"{server.base}{b.API}/recording/download?{query}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-mb", type=int, default=8)
    parser.add_argument("--big-mb", type=int, default=160)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    b.require_tools("curl")
    b.say(b.machine())
    sizes = {"small": args.small_mb, "big": args.big_mb}
    names = {label: f"bench-{mb}mb.wav" for label, mb in sizes.items()}
    for label, mb in sizes.items():
        make_file(FOLDER / "2026" / "05" / "28" / names[label], mb)
    database_url = database(list(names.values()))
    out = b.DATA / "recording-copy.wav"
    peaks: dict[str, float] = {}
    for label, mb in sizes.items():
        source = FOLDER / "2026" / "05" / "28" / names[label]
        with b.serve(database_url, "--recordings", str(FOLDER)) as server:
            times = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                fetch(server, names[label], out)
                times.append(time.perf_counter() - started)
                if b.file_digest(out) != b.file_digest(source):
                    raise SystemExit(f"{label}: the copy differs from the file")
            peaks[label] = server.peak_rss_mb()
        copy = ["cp", str(source), str(out)]
        ref = b.timed(lambda copy=copy: b.run(copy), args.repeat)
        b.report(f"download {mb} MB", times, f"cp {mb} MB", ref)
        b.say(f"  {label} ({mb} MB): peak RSS {peaks[label]:.0f} MB, identical bytes")
    growth = peaks["big"] / peaks["small"] - 1
    verdict = "flat" if abs(growth) <= 0.10 else "NOT flat"
    b.say(f"peak RSS {peaks['small']:.0f} MB -> {peaks['big']:.0f} MB ({growth:+.0%}): {verdict}")
    out.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
