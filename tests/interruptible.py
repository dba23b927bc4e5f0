"""A child process that Ctrl-C (SIGINT) interrupts, whoever started the test run."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def popen_interruptible(args: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen(args, **kwargs)`` with SIGINT as a terminal's Ctrl-C finds it: a
    runner started in the background by a non-interactive shell has SIGINT ignored, and an
    ignored signal stays ignored across exec (a handled one does not), so the child would
    never see the signal its test sends."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(args, **kwargs)
    finally:
        signal.signal(signal.SIGINT, previous)
