"""Ctrl-C and SIGTERM: stop the work in flight, let the runner record it, then exit.

The first signal cancels whatever the runner is awaiting (a step, a pause prompt) and the
runner turns that into status ``interrupted`` with state saved. A second signal exits at once;
the state on disk is still valid because every write is atomic.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

from stepline.errors import RunInterrupted

T = TypeVar("T")

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """Tracks a received stop signal and the tasks it should cancel."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def exit_code(self) -> int:
        """130 for SIGINT, 143 for SIGTERM (the shell convention 128 + signal number)."""
        return 128 + (self.signal or signal.SIGINT)

    def install(self) -> None:
        """Handle SIGINT and SIGTERM on the running loop (main thread only)."""
        self._loop = asyncio.get_running_loop()
        for sig in HANDLED_SIGNALS:
            self._loop.add_signal_handler(sig, self.request, sig)

    def uninstall(self) -> None:
        if self._loop is not None:
            for sig in HANDLED_SIGNALS:
                self._loop.remove_signal_handler(sig)
            self._loop = None

    def request(self, signum: int) -> None:
        """Called on a signal: the first cancels the work, a second exits immediately."""
        if self.signal is not None:
            os._exit(128 + signum)
        self.signal = signum
        for task in list(self._tasks):
            task.cancel()

    def check(self) -> None:
        """Raise ``RunInterrupted`` if a stop was requested (called between units of work)."""
        if self.signal is not None:
            raise RunInterrupted(f"interrupted by {signal.Signals(self.signal).name}")

    async def guard(self, work: Coroutine[Any, Any, T]) -> T:
        """Await ``work`` so that a stop signal cancels it and raises ``RunInterrupted``."""
        self.check()
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        try:
            return await task
        except asyncio.CancelledError:
            if self.signal is None:
                raise
            self.check()
            raise
        finally:
            self._tasks.discard(task)
