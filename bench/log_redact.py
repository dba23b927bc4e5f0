"""What the access log's token masking costs a request line, against writing the line.

    .venv/bin/python bench/log_redact.py [--lines 20000] [--repeat 5]

``serve`` writes one access-log line per request (on by default, at INFO) and masks every
token, random and password in its target first (``logredact.redact``). Since the thirty-third
round a target holding ``%`` is also decoded (up to three times) and masked again, so a token
the client percent-encoded is caught; every CDR download's target holds ``%`` (its
``starttime=2026-05-04%2000:00:00``). This measures, per line and in the same run:

- *write*: the line through the logging stack as ``serve`` configures it (``TEXT_FORMAT``, a
  ``StreamHandler``) into a file, its target already masked: what a line costs without
  masking;
- *redact*: ``logredact.redact`` of the target, as the access log calls it;
- *one pass*: the two patterns alone, without the decoding (the masking before the thirty-third
  round), as the reference for what the decoding adds.

The small flow's server CPU a request (bench/small_flows.py, which runs at ``--log-level
warning`` and so writes no access line) puts these figures in proportion.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import benchlib as b

from cdrgate import logredact
from cdrgate.logsetup import TEXT_FORMAT

TOKEN, RANDOM = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
# The targets of the requests clients send most, as the access log sees them.
TARGETS = {
    "download (has %)": "/api/v1.1.0/cdr/download?extid=1003&starttime=2026-05-04%2000:00:00"
    f"&endtime=2026-05-04%2023:59:59&token={TOKEN}&random={RANDOM}",
    "get_random": f"/api/v1.1.0/cdr/get_random?token={TOKEN}",
    "query API (Bearer)": "/v1/cdrs?number=1000&from=2026-05-01T00:00:00&limit=5",
    "encoded token": f"/api/v1.1.0/cdr/get_random?token%3D{TOKEN}",
}


def per_line(func: Callable[[str], object], target: str, lines: int, repeat: int) -> float:
    """The best of ``repeat`` runs of ``lines`` calls, in microseconds a call."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(lines):
            func(target)
        best = min(best, time.perf_counter() - started)
    return best / lines * 1e6


def one_pass(text: str) -> str:
    return logredact._redact(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    b.say(f"== log_redact | {b.machine()}")
    with tempfile.TemporaryDirectory() as folder:
        handler = logging.StreamHandler(Path(folder, "access.log").open("w"))
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
        log = logging.getLogger("bench.access")
        log.propagate, log.level = False, logging.INFO
        log.addHandler(handler)

        def write(target: str) -> None:
            log.info('%s "%s %s" %s %d %.1fms', "127.0.0.1", "GET", target, 200, 1234, 1.5)

        ratios = []
        for name, target in TARGETS.items():
            masked = logredact.redact(target)
            written = per_line(write, masked, args.lines, args.repeat)
            redacted = per_line(logredact.redact, target, args.lines, args.repeat)
            single = per_line(one_pass, target, args.lines, args.repeat)
            ratios.append(redacted / written)
            b.say(
                f"  {name:<20} write {written:5.1f} us  redact {redacted:5.1f} us "
                f"({redacted / written:.2f}x the write)  one pass {single:5.1f} us "
                f"(decoding adds {redacted - single:4.1f} us)"
            )
        handler.close()
    b.say(f"  redact / write, median over the targets: {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
