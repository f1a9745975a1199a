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
ready, which is exact for code that waits only on timers and on stepline's own threads; a test
whose timers race real work in other threads or processes needs a threshold (or no mock).
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class MockClock:
    """Virtual time for one or more ``run()`` calls; ``now`` starts at ``start``."""

    def __init__(self, *, start: float = 0.0, autojump_threshold: float = 0.0) -> None:
        self.now = start
        self.autojump_threshold = autojump_threshold
        self.jumps = 0  # how many times the clock skipped ahead for lack of anything to do

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
        ready = super().select(min(timeout, self._clock.autojump_threshold))
        if not ready:
            self._clock.now += timeout
            self._clock.jumps += 1
        return ready


class _MockClockLoop(asyncio.SelectorEventLoop):
    def __init__(self, clock: MockClock) -> None:
        super().__init__(selector=_JumpingSelector(clock))
        self._mock_clock = clock

    def time(self) -> float:
        return self._mock_clock.now
