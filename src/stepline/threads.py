"""Run blocking callables (user code, a terminal prompt) without blocking the event loop.

A daemon thread, unlike the default executor's, never delays process exit: an interrupted run
stops promptly even while a sync step function or a pause prompt is still busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any


async def run_in_thread(function: Callable[..., Any], *args: Any) -> Any:
    """Run a sync callable in a daemon thread; cancelling the await abandons the thread."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed after an interrupt
            loop.call_soon_threadsafe(outcome)

    def target() -> None:
        try:
            result = function(*args)
        except BaseException as exc:  # handed to the awaiting task, not swallowed
            error = exc
            settle(lambda: None if future.done() else future.set_exception(error))
        else:
            settle(lambda: None if future.done() else future.set_result(result))

    threading.Thread(target=target, name="stepline-step", daemon=True).start()
    return await future
