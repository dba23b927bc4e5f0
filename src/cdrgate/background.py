"""The server's background loops (the purge, retention) call the database from a thread."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from cdrgate.errors import StorageUnavailable

T = TypeVar("T")


async def to_the_end(call: Callable[..., T], *args: object) -> T:
    """``call(*args)`` in a thread; a cancel (the shutdown's) is delivered once it returned.

    The thread holds a pooled connection, and the shutdown disposes the database next. A
    connection still out then goes back to the disposed pool and is never closed: left to the
    garbage collector, with its transaction (or retention's advisory lock) held until then.
    The thread is not cut short by the cancel anyway; this only waits for it."""
    work = asyncio.ensure_future(run_in_threadpool(call, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        await asyncio.wait([work])
        if not work.cancelled():
            work.exception()  # taken, so not logged as never retrieved: moot when stopping
        raise


def log_failed_run(logger: logging.Logger, what: str, exc: Exception) -> None:
    """A background run that failed, whose loop goes on: a database that cannot be used (an
    outage, met again at every run until it ends) is one line with its reason, as a
    request's is; anything else keeps its traceback."""
    if isinstance(exc, StorageUnavailable):
        logger.warning("%s: %s", what, exc)
    else:
        logger.warning(what, exc_info=exc)
