"""``stream_items``: items flowing from one fan-out step into the next while both run.

The upstream step puts each finished item's result into an ``ItemStream``; the downstream step
takes them as they come. The stream holds at most ``limit`` results: when the downstream step
falls behind, the upstream step's item tasks wait at ``put``, so memory stays bounded by the
two steps' concurrency and the buffer, not by the number of items.

The two ends can stop each other without cancelling anything: the upstream step ``close``s the
stream (saying whether it failed), and the downstream step ``abandon``s it when it fails, after
which ``put`` returns at once and the upstream step stops launching items.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Any


class ItemStream:
    """A bounded, closable buffer of ``(index, value)`` between two fan-out steps."""

    def __init__(self, producer: str, limit: int) -> None:
        self.producer = producer
        self._limit = max(1, limit)
        self._buffer: deque[tuple[int, Any]] = deque()
        self._changed = asyncio.Condition()
        self.closed = False
        self.producer_failed = False
        self.abandoned = False

    async def put(self, index: int, value: Any) -> None:
        """Hand one result downstream; waits while the buffer is full (backpressure)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.abandoned or len(self._buffer) < self._limit)
            if not self.abandoned:
                self._buffer.append((index, value))
                self._changed.notify_all()

    async def close(self, *, failed: bool) -> None:
        """No more results will come; ``failed``: not every item made it."""
        async with self._changed:
            self.closed, self.producer_failed = True, failed
            self._changed.notify_all()

    async def abandon(self) -> None:
        """The consumer stopped: drop what waits, and let every ``put`` return at once."""
        async with self._changed:
            self.abandoned = True
            self._buffer.clear()
            self._changed.notify_all()

    async def __aiter__(self) -> AsyncIterator[tuple[int, Any]]:
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda: bool(self._buffer) or self.closed)
                if not self._buffer:
                    return
                entry = self._buffer.popleft()
                self._changed.notify_all()
            yield entry
