"""The flow's hand-over to a worker thread (``api/threads.py``): results and errors come back,
a cancelled request waits for its call to end, and the threads are bounded."""

from __future__ import annotations

import asyncio
import threading
import time

import anyio
import pytest

from cdrgate.api import threads


def _fail(message: str) -> None:
    raise ValueError(message)


def test_a_calls_result_and_error_come_back_to_the_caller() -> None:
    async def main() -> None:
        assert await threads.in_thread(lambda x: x * 2, 21) == 42
        assert await threads.in_thread(lambda _: threading.current_thread().name, None) != (
            threading.current_thread().name
        )
        with pytest.raises(ValueError, match="refused"):
            await threads.in_thread(_fail, "refused")

    anyio.run(main)


def test_a_cancelled_request_ends_only_once_its_call_has_ended() -> None:
    ended = threading.Event()

    def slow(_: None) -> None:
        time.sleep(0.3)
        ended.set()

    async def main() -> None:
        with anyio.move_on_after(0.05):
            await threads.in_thread(slow, None)
        assert ended.is_set()  # the cancellation came only after the call

    anyio.run(main)


def test_a_request_cancelled_by_a_plain_asyncio_cancel_ends_only_once_its_call_has_ended() -> None:
    # uvicorn cancels the requests still running at the end of a graceful shutdown with
    # Task.cancel(), not through an anyio scope: the database work must still end first.
    ended = threading.Event()

    def slow(_: None) -> None:
        time.sleep(0.3)
        ended.set()

    async def main() -> None:
        task = asyncio.ensure_future(threads.in_thread(slow, None))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert ended.is_set()

    asyncio.run(main())


def test_a_cancelled_requests_call_that_fails_ends_it_as_cancelled() -> None:
    def failing(_: None) -> None:
        time.sleep(0.2)
        raise ValueError("refused")

    async def main() -> None:
        with anyio.move_on_after(0.05) as scope:
            await threads.in_thread(failing, None)
        assert scope.cancelled_caught

    anyio.run(main)


def test_calls_beyond_the_thread_bound_wait_for_a_free_thread(monkeypatch) -> None:
    monkeypatch.setattr(threads, "MOST_THREADS", 2)
    monkeypatch.setattr(threads, "_workers", threads._Workers())
    lock = threading.Lock()
    running, most = 0, 0

    def work(_: None) -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1

    async def main() -> None:
        async with anyio.create_task_group() as group:
            for _ in range(6):
                group.start_soon(threads.in_thread, work, None)

    anyio.run(main)
    assert most == 2


def test_a_call_that_outlives_its_event_loop_leaves_its_thread_serving(monkeypatch) -> None:
    monkeypatch.setattr(threads, "MOST_THREADS", 1)
    workers = threads._Workers()
    monkeypatch.setattr(threads, "_workers", workers)
    release = threading.Event()
    loop = asyncio.new_event_loop()
    task = loop.create_task(threads.in_thread(lambda _: release.wait(5), None))
    loop.run_until_complete(asyncio.sleep(0.05))  # the call has started in the thread
    task.cancel()  # shielded: still pending when the loop closes under it
    loop.close()
    release.set()
    # The one thread must take the next call (submitted as in_thread does, without waiting
    # on a loop: a lost thread would leave it queued for ever).
    served = threading.Event()
    other = asyncio.new_event_loop()
    try:
        workers.submit(threads._Call(lambda _: served.set(), None, other))
        assert served.wait(5)
    finally:
        other.close()


# ``to_completion``: the same shield for statements run on the loop (storage/pg_loop.py).


def test_work_on_the_loop_gives_its_result_and_error_to_the_caller() -> None:
    async def twice(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    async def failing() -> None:
        await asyncio.sleep(0)
        raise ValueError("refused")

    async def main() -> None:
        assert await threads.to_completion(twice(21)) == 42
        with pytest.raises(ValueError, match="refused"):
            await threads.to_completion(failing())

    anyio.run(main)


def test_a_request_cancelled_by_a_scope_ends_only_once_its_work_on_the_loop_has_ended() -> None:
    ended: list[bool] = []

    async def slow() -> None:
        await asyncio.sleep(0.3)  # a statement's wait for its answer
        ended.append(True)

    async def main() -> None:
        with anyio.move_on_after(0.05) as scope:
            await threads.to_completion(slow())
        assert scope.cancelled_caught
        assert ended == [True]  # the cancellation came only after the work

    anyio.run(main)


def test_a_request_cancelled_by_a_plain_cancel_ends_only_once_its_work_on_the_loop_has_ended():
    ended: list[bool] = []

    async def slow() -> None:
        await asyncio.sleep(0.3)
        ended.append(True)

    async def main() -> None:
        task = asyncio.ensure_future(threads.to_completion(slow()))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert ended == [True]

    asyncio.run(main())


def test_a_cancelled_requests_work_on_the_loop_that_fails_ends_it_as_cancelled() -> None:
    async def failing() -> None:
        await asyncio.sleep(0.2)
        raise ValueError("refused")

    async def main() -> None:
        with anyio.move_on_after(0.05) as scope:
            await threads.to_completion(failing())
        assert scope.cancelled_caught

    anyio.run(main)


def test_a_cancelled_requests_result_goes_to_if_cancelled_and_a_failure_does_not() -> None:
    given: list[object] = []

    async def keep(result: object) -> None:
        await asyncio.sleep(0.05)  # awaited to its end before the cancel goes on
        given.append(result)

    def slow(value: object) -> object:
        time.sleep(0.2)
        if value is None:
            raise ValueError("refused")
        return value

    async def on_the_loop(value: object) -> object:
        await asyncio.sleep(0.2)
        return slow(None) if value is None else value

    async def main() -> None:
        for value in ("made", None):
            for via in ("thread", "loop"):
                if via == "thread":
                    work = threads.in_thread(slow, value, if_cancelled=keep)
                else:
                    work = threads.to_completion(on_the_loop(value), if_cancelled=keep)
                task = asyncio.ensure_future(work)
                await asyncio.sleep(0.05)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
        assert given == ["made", "made"]

    asyncio.run(main())


def test_a_result_that_comes_after_its_future_was_cancelled_still_goes_to_if_cancelled() -> None:
    # The cancel reaches the request's future before the worker's outcome is handed over:
    # the outcome is kept on the call, not lost with the future.
    given: list[object] = []
    started = threading.Event()

    async def keep(result: object) -> None:
        given.append(result)

    def work(_: None) -> str:
        started.set()
        return "made"

    async def main() -> None:
        task = asyncio.ensure_future(threads.in_thread(work, None, if_cancelled=keep))
        await asyncio.sleep(0)  # the call handed over
        # The loop held (not awaited): the worker's outcome is queued behind it, unread.
        assert started.wait(5)
        time.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert given == ["made"]

    asyncio.run(main())
