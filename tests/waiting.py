"""Waiting in a test for a real condition to hold: polled, with a deadline that fails the test
instead of hanging it; a condition that holds ends the wait at once, so the deadline can be
generous (the machine may be shared)."""

from __future__ import annotations

import time
from collections.abc import Callable

DEADLINE_S = 30.0


def wait_until(
    condition: Callable[[], bool],
    what: str | Callable[[], str],
    seconds: float = DEADLINE_S,
    every: float = 0.02,
) -> None:
    """Poll ``condition`` every ``every`` seconds until it holds; past ``seconds``, fail with
    ``what`` (a callable: what it returns then, e.g. the state last seen)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            told = what() if callable(what) else what
            raise AssertionError(f"not seen within {seconds:g} s: {told}")
        time.sleep(every)
