"""The run's clock is its event loop's.

Every wait a run makes (retry backoff, ``rate_limit`` spacing, batch polls, step and item
timeouts) is an ``asyncio`` sleep or timeout, and both read ``loop.time()``. Durations are read
from the same clock, through ``monotonic()``, so that a run on a loop with another clock (the
tests' ``MockClock``, after trio's) sees one consistent time: a backoff of 30 s takes no real
time there and is recorded as 30 s. On an ordinary loop this is ``time.monotonic()``.

Wall-clock times (timestamps in ``state.json``, a batch's submission time, cache ages) are
``time.time()`` and stay so: they are compared with other processes' clocks, not with the loop.
"""

from __future__ import annotations

import asyncio
import time


def monotonic() -> float:
    """Seconds on the running loop's clock; ``time.monotonic()`` outside a loop."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()
