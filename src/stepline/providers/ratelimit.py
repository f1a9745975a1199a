"""``rate_limit: 50/min``: space out request starts evenly, shared by every step of a run.

Evenly spaced starts (one every 1.2 s at 50/min) rather than a bucket that refills: a fan-out
with concurrency 100 would otherwise send a burst at once and collect a wall of 429s. Every
HTTP attempt takes a slot, retries and fallbacks included, because the provider counts them.
"""

from __future__ import annotations

import asyncio

from stepline import clock


class RateLimiter:
    """At most ``per_second`` request starts per second, evenly spaced."""

    def __init__(self, per_second: float) -> None:
        self._interval = 1.0 / per_second
        self._next_start = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        """Return when the caller may start its request."""
        async with self._lock:
            now = clock.monotonic()
            start = max(now, self._next_start)
            self._next_start = start + self._interval
        if start > now:
            await asyncio.sleep(start - now)
