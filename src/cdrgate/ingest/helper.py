"""Producing batches in a helper process while this one stores them.

Parsing (or generating) rows and inserting them take comparable time, and the GIL would
serialise them in threads; a second process puts the other core to work. Batches cross a
bounded queue (memory stays at a few batches), and a helper that dies is noticed at once.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Generator, Iterable
from queue import Empty
from typing import Any, TypeVar

T = TypeVar("T")
QUEUED_BATCHES = 4


def batches_from_helper(
    produce: Callable[..., Iterable[list[T]]], *args: Any
) -> Generator[list[T], None, None]:
    """The batches of ``produce(*args)``, run in a helper process (``produce`` must be a
    module-level function and ``args`` picklable). Closing the generator stops the helper."""
    # spawn, not fork: the parent may run threads (progress bar) and holds database handles.
    context = multiprocessing.get_context("spawn")
    queue = context.Queue(maxsize=QUEUED_BATCHES)
    helper = context.Process(target=_run, args=(produce, args, queue), daemon=True)
    helper.start()
    try:
        while True:
            try:
                batch = queue.get(timeout=1.0)
            except Empty:
                if not helper.is_alive():
                    raise RuntimeError("the helper process stopped unexpectedly") from None
                continue
            if batch is None:
                return
            if isinstance(batch, _Failed):
                raise RuntimeError(f"the helper process failed: {batch.reason}")
            yield batch
    finally:
        if helper.is_alive():
            helper.terminate()
        helper.join()


class _Failed:
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _run(produce: Callable[..., Iterable[list[Any]]], args: tuple[Any, ...], queue: Any) -> None:
    """Helper process body: every batch, then None (or what went wrong)."""
    try:
        for batch in produce(*args):
            queue.put(batch)
    except Exception as exc:  # the parent raises it; a traceback here would go nowhere useful
        queue.put(_Failed(f"{type(exc).__name__}: {exc}"))
        return
    queue.put(None)
