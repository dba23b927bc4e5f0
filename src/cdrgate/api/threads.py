"""A flow's hand-over to a worker thread, cheaper than anyio's (Starlette's ``run_in_threadpool``).

On PostgreSQL every cdr/get_random and cdr/download runs its database work in a thread. anyio's
hand-over cost ~105 us of CPU a call in isolation (its capacity limiter, a worker per call
chosen under its own locks, a ``queue.Queue`` whose ``Condition`` wakes the worker, the
caller's context copied); this one ~20 us (bench/RESULTS.md, seventeenth round): the call
goes on a ``queue.SimpleQueue`` (C, no ``Condition``) that the workers block on, and its
result comes back to the loop through ``call_soon_threadsafe``.

What anyio's hand-over gave is kept:

- **Shielded**: a request cancelled while its call runs waits for the call to end, then is
  cancelled (``anyio.CancelScope(shield=True)``, as anyio's own ``run_sync`` does), so no
  request ends while its database work goes on (a download's random spent, its export never
  finished). Unlike anyio's, a call still queued for a thread when cancelled runs all the same.
- **Bounded**: at most ``MOST_THREADS`` threads (anyio's default limiter); calls beyond wait
  in the queue for one, as they waited for a token. Threads start as calls need them.

Unlike anyio's, the call runs in the worker thread's own context, not a copy of the caller's:
a thread's storage work must never see the loop's (``storage/db.py``'s ``_ON_LOOP``).
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

A = TypeVar("A")
R = TypeVar("R")

MOST_THREADS = 40

_Call = tuple[Callable[[Any], Any], Any, asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class _Workers:
    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0  # threads waiting for a call and not yet promised one

    def submit(self, call: _Call) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1  # that thread takes this call
            elif self._threads < MOST_THREADS:
                self._threads += 1
                threading.Thread(target=self._work, name="cdrgate-worker", daemon=True).start()
            # else: every thread is busy; the call waits in the queue for the first free one
        self._calls.put(call)

    def _work(self) -> None:
        while True:
            _run(*self._calls.get())  # its frame, and all it held, gone before the next wait
            with self._lock:
                self._idle += 1


def _run(
    work: Callable[[Any], Any], arg: Any, loop: asyncio.AbstractEventLoop, done: asyncio.Future[Any]
) -> None:
    result, error = None, None
    try:
        result = work(arg)
    except BaseException as exc:  # handed to the caller, as anyio hands it
        error = exc
    try:
        loop.call_soon_threadsafe(_settle, done, result, error)
    except RuntimeError:
        pass  # the loop is closed: nobody waits for the answer, and the thread lives on


def _settle(done: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if done.done():  # the loop's future was cancelled from outside the shield: nobody waits
        return
    if error is None:
        done.set_result(result)
    else:
        done.set_exception(error)


_workers = _Workers()


def _forget() -> None:
    # In a forked child: the parent's threads are not there, and its lock may be held.
    global _workers
    _workers = _Workers()


os.register_at_fork(after_in_child=_forget)


async def in_thread(work: Callable[[A], R], arg: A) -> R:
    """``work(arg)`` in a worker thread; its result or exception, once it has ended."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[R] = loop.create_future()
    _workers.submit((work, arg, loop, done))
    with anyio.CancelScope(shield=True):
        result = await done
    return result
