"""Run blocking callables (user code, a terminal prompt) without blocking the event loop.

Daemon threads, unlike the default executor's, never delay process exit: an interrupted run
stops promptly even while a sync step function or a pause prompt is still busy. They are
kept between calls (a fan-out over thousands of items would otherwise start a thread per
item, about a tenth of a millisecond each): a call takes an idle worker or starts one. A call
whose await was cancelled keeps its worker until the function returns, so the number of
workers is the peak number of calls at once, timed-out ones included.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

_jobs: queue.SimpleQueue[Callable[[], Callable[[], None]]] = queue.SimpleQueue()
_idle_workers = 0  # workers waiting for a job that no call has claimed yet
_workers_lock = threading.Lock()


async def run_in_thread(function: Callable[..., Any], *args: Any) -> Any:
    """Run a sync callable in a daemon worker thread; cancelling the await abandons it."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed after an interrupt
            loop.call_soon_threadsafe(outcome)

    def job() -> Callable[[], None]:
        """Run the function; return how to hand its outcome to the awaiting task."""
        try:
            result = function(*args)
        except BaseException as exc:  # handed to the awaiting task, not swallowed
            error = exc
            return lambda: settle(lambda: None if future.done() else future.set_exception(error))
        return lambda: settle(lambda: None if future.done() else future.set_result(result))

    _submit(job)
    return await future


def _submit(job: Callable[[], Callable[[], None]]) -> None:
    """Queue ``job`` for an idle worker, starting a worker when none is idle."""
    global _idle_workers
    with _workers_lock:
        if _idle_workers:
            _idle_workers -= 1  # that worker is now spoken for
        else:
            threading.Thread(target=_work, name="stepline-step", daemon=True).start()
    _jobs.put(job)


def _work() -> None:
    global _idle_workers
    while True:
        deliver = _jobs.get()()
        with _workers_lock:  # idle before the caller hears back, so its next call finds us
            _idle_workers += 1
        deliver()
