"""A flow's hand-over to a worker thread, cheaper than anyio's (Starlette's ``run_in_threadpool``).

On PostgreSQL every cdr/get_random and cdr/download runs its database work in a thread. anyio's
hand-over cost ~105 us of CPU a call in isolation (its capacity limiter, a worker per call
chosen under its own locks, a ``queue.Queue`` whose ``Condition`` wakes the worker, the
caller's context copied); this one ~20 us (bench/RESULTS.md, seventeenth round): the call
goes on a ``queue.SimpleQueue`` (C, no ``Condition``) that the workers block on, and its
result comes back to the loop through ``call_soon_threadsafe``.

What anyio's hand-over gave is kept:

- **Shielded**: a request cancelled while its call runs waits for the call to end, then is
  cancelled, so no request ends while its database work goes on (a download's random spent,
  its export never finished). Unlike anyio's, a call still queued for a thread when cancelled
  runs all the same. The shield costs nothing until a cancel comes: the call's future is
  awaited bare, and only a cancelled request waits again, for a future of its own, inside
  ``anyio.CancelScope(shield=True)`` (anyio's scopes cancel a task again at every turn of the
  loop otherwise). A scope entered around every call cost ~8-10 us a call (bench/RESULTS.md,
  twenty-first round), and held only against anyio's scopes: a plain asyncio cancel (uvicorn's,
  at the end of a graceful shutdown) went through it; the first now waits too.
- **Bounded**: at most ``MOST_THREADS`` threads (anyio's default limiter); calls beyond wait
  in the queue for one, as they waited for a token. Threads start as calls need them.

Unlike anyio's, the call runs in the worker thread's own context, not a copy of the caller's:
a thread's storage work must never see the loop's (``storage/db.py``'s ``_ON_LOOP``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any, TypeVar

import anyio

A = TypeVar("A")
R = TypeVar("R")
# What a cancelled request does with a result nobody will use (``in_thread``'s ``if_cancelled``).
Abandoned = Callable[[R], Awaitable[None]]

MOST_THREADS = 40


class _Call:
    """One call handed to a worker, and the future its outcome goes to (replaced when its
    request is cancelled: asyncio cancels the future a cancelled task awaits)."""

    __slots__ = ("arg", "ended", "error", "future", "loop", "result", "work")

    def __init__(
        self, work: Callable[[Any], Any], arg: Any, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.work = work
        self.arg = arg
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.ended = False  # set on the loop, as the outcome is handed over
        # The outcome, kept for a cancelled request's ``if_cancelled`` (its future may have
        # been cancelled before the outcome came).
        self.result: Any = None
        self.error: BaseException | None = None


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
            _run(self._calls.get())  # its frame, and all it held, gone before the next wait
            with self._lock:
                self._idle += 1


def _run(call: _Call) -> None:
    result, error = None, None
    try:
        result = call.work(call.arg)
    except BaseException as exc:  # handed to the caller, as anyio hands it
        error = exc
    try:
        call.loop.call_soon_threadsafe(_settle, call, result, error)
    except RuntimeError:
        pass  # the loop is closed: nobody waits for the answer, and the thread lives on


def _settle(call: _Call, result: Any, error: BaseException | None) -> None:
    call.ended, call.result, call.error = True, result, error
    future = call.future
    if future.done():  # cancelled, and its request no longer waits for it
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


_workers = _Workers()


def _forget() -> None:
    # In a forked child: the parent's threads are not there, and its lock may be held.
    global _workers
    _workers = _Workers()


os.register_at_fork(after_in_child=_forget)


async def in_thread(
    work: Callable[[A], R], arg: A, *, if_cancelled: Abandoned[R] | None = None
) -> R:
    """``work(arg)`` in a worker thread; its result or exception, once it has ended.

    ``if_cancelled``: given the result of a call whose request was cancelled meanwhile (it
    ran to its end all the same, and nobody will use what it made), before the cancel goes
    on: a download's export, whose audit record must say it was never sent."""
    call = _Call(work, arg, asyncio.get_running_loop())
    _workers.submit(call)
    try:
        result: R = await call.future
    except asyncio.CancelledError:
        if not call.ended:
            await _until_ended(call)
        if if_cancelled is not None and call.error is None:
            await _abandoned(if_cancelled, call.result)
        raise
    return result


async def _until_ended(call: _Call) -> None:
    """A cancelled request's wait for its call's end; its outcome has nobody to go to."""
    call.future = call.loop.create_future()
    with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
        await call.future


async def to_completion(
    work: Coroutine[Any, Any, R], *, if_cancelled: Abandoned[R] | None = None
) -> R:
    """``await work`` (statements on the loop: ``storage/pg_loop.py``), shielded as
    ``in_thread``'s call is: it runs as a task of its own, and a request cancelled meanwhile
    waits for it to end, then is cancelled, so a statement is never cut (a random spent, its
    download's audit record unwritten). Awaited through a future of its own, not the task: a
    cancelled request cancels what it awaits. ``if_cancelled``: as ``in_thread``'s."""
    loop = asyncio.get_running_loop()
    task = loop.create_task(work)
    ended: asyncio.Future[None] = loop.create_future()
    task.add_done_callback(partial(_wake, ended))
    try:
        await ended
    except asyncio.CancelledError:
        if not task.done():
            again: asyncio.Future[None] = loop.create_future()
            task.add_done_callback(partial(_wake, again))
            with anyio.CancelScope(shield=True):
                await again
        # Its exception, if any, has nobody to go to (taken, so not logged as unretrieved).
        if not task.cancelled() and task.exception() is None and if_cancelled is not None:
            await _abandoned(if_cancelled, task.result())
        raise
    return task.result()


async def _abandoned(if_cancelled: Abandoned[R], result: R) -> None:
    """``if_cancelled(result)`` to its end, as a cancelled request's last work: shielded
    from a second cancel (anyio's scopes cancel again at every turn of the loop)."""
    with anyio.CancelScope(shield=True):
        await if_cancelled(result)


def _wake(future: asyncio.Future[None], _task: object) -> None:
    if not future.done():  # cancelled, and its request no longer waits for it
        future.set_result(None)
