"""A mock clock for asyncio, after trio's ``trio.testing.MockClock``.

stepline's waits (backoff, ``rate_limit`` spacing, batch polls, timeouts) all read the event
loop's clock (``stepline.clock``). ``MockClock.run(coro)`` runs ``coro`` on a loop whose
clock stands still until every task is waiting for a timer, then jumps straight to the next
timer ("autojump"). A run that backs off for minutes takes milliseconds, every wait lasts
exactly what the code asked for, and a test can assert the times at which things happened
without ever racing the real clock.

Waiting for I/O is real: before jumping, the loop looks for ready sockets and finished worker
threads (which wake it through its self-pipe), and with ``autojump_threshold`` it first waits
that long in real time for them, as trio's does. The default of 0 jumps as soon as nothing is
ready, which is exact for code that waits only on timers. Code whose timers race work in
threads (a commit in a writer thread while other tasks sleep) passes ``busy``: a predicate
that says whether that work is still going; the loop then waits for it in real time before
jumping (at most ``SETTLE_LIMIT_S``, a safety net for a stuck thread), so the virtual times
come out the same however slow the machine is.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

SETTLE_LIMIT_S = 30.0
"""The longest real wait for ``busy`` work before the clock jumps anyway."""


class MockClock:
    """Virtual time for one or more ``run()`` calls; ``now`` starts at ``start``."""

    def __init__(
        self,
        *,
        start: float = 0.0,
        autojump_threshold: float = 0.0,
        busy: Callable[[], bool] | None = None,
    ) -> None:
        self.now = start
        self.autojump_threshold = autojump_threshold
        self.busy = busy
        self.jumps = 0  # how many times the clock skipped ahead for lack of anything to do
        self.settle_waits = 0  # how many times a jump first waited for ``busy`` work

    def jump(self, seconds: float) -> None:
        """Move the clock forward by hand (timers that come due then fire on the next turn)."""
        if seconds < 0:
            raise ValueError("time does not go backwards")
        self.now += seconds

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        """Run ``main`` to completion on a new loop that keeps this clock's time."""
        with asyncio.Runner(loop_factory=lambda: _MockClockLoop(self)) as runner:
            return runner.run(main)


class _JumpingSelector(selectors.DefaultSelector):
    """Where the loop waits: real for I/O, virtual for timers."""

    def __init__(self, clock: MockClock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        # The loop passes the time left until its next timer (None: no timer, only I/O).
        if timeout is None or timeout <= 0:
            return super().select(timeout)
        clock = self._clock
        ready = super().select(min(timeout, clock.autojump_threshold))
        deadline = time.monotonic() + SETTLE_LIMIT_S
        while not ready and clock.busy is not None and clock.busy():
            if time.monotonic() > deadline:
                break
            clock.settle_waits += 1
            ready = super().select(0.001)  # the busy work's result wakes the loop
        if not ready:
            ready = super().select(0)  # work that just finished may have written
        if not ready:
            clock.now += timeout
            clock.jumps += 1
        return ready


class _MockClockLoop(asyncio.SelectorEventLoop):
    def __init__(self, clock: MockClock) -> None:
        super().__init__(selector=_JumpingSelector(clock))
        self._mock_clock = clock

    def time(self) -> float:
        return self._mock_clock.now
