"""``RateLimiter``: evenly spaced request starts, on virtual time."""

from __future__ import annotations

import asyncio

import pytest

from stepline import clock
from stepline.providers.ratelimit import RateLimiter
from stepline.spec.durations import parse_rate
from tests.fakes.clock import MockClock

FIFTY_PER_MINUTE = 50 / 60  # one start every 1.2 s


async def start(limiter: RateLimiter, starts: list[float]) -> None:
    await limiter.wait()
    starts.append(clock.monotonic())


def test_concurrent_waiters_start_one_interval_apart() -> None:
    limiter = RateLimiter(FIFTY_PER_MINUTE)
    starts: list[float] = []

    async def main() -> None:
        await asyncio.gather(*(start(limiter, starts) for _ in range(5)))

    MockClock().run(main())

    assert starts == pytest.approx([0.0, 1.2, 2.4, 3.6, 4.8])


def test_the_rate_config_value_gives_the_same_spacing() -> None:
    limiter = RateLimiter(parse_rate("50/min"))
    starts: list[float] = []

    async def main() -> None:
        await asyncio.gather(*(start(limiter, starts) for _ in range(3)))

    MockClock().run(main())

    assert starts == pytest.approx([0.0, 1.2, 2.4])


def test_waiters_start_in_the_order_they_asked() -> None:
    limiter = RateLimiter(2.0)
    order: list[tuple[str, float]] = []

    async def named(name: str) -> None:
        await limiter.wait()
        order.append((name, clock.monotonic()))

    async def main() -> None:
        await asyncio.gather(*(named(name) for name in "abcd"))

    MockClock().run(main())

    assert order == [("a", 0.0), ("b", 0.5), ("c", 1.0), ("d", 1.5)]


def test_the_first_request_starts_at_once_whatever_the_clock_reads() -> None:
    limiter = RateLimiter(FIFTY_PER_MINUTE)
    starts: list[float] = []

    MockClock(start=1000.0).run(start(limiter, starts))

    assert starts == [1000.0]


def test_a_waiter_after_an_idle_gap_starts_at_once() -> None:
    limiter = RateLimiter(1.0)
    starts: list[float] = []

    async def main() -> None:
        await start(limiter, starts)
        await asyncio.sleep(10)
        await start(limiter, starts)  # the slot after the first (1.0) is long past
        await start(limiter, starts)  # but the one after this one is not

    MockClock().run(main())

    assert starts == [0.0, 10.0, 11.0]


def test_a_waiter_inside_the_interval_waits_only_the_rest_of_it() -> None:
    limiter = RateLimiter(0.25)  # one start every 4 s
    starts: list[float] = []

    async def main() -> None:
        await start(limiter, starts)
        await asyncio.sleep(2.5)
        await start(limiter, starts)

    MockClock().run(main())

    assert starts == [0.0, 4.0]


def test_an_idle_gap_does_not_bank_a_burst() -> None:
    """Evenly spaced, not a bucket: after a long pause the next waiters are still spaced."""
    limiter = RateLimiter(2.0)
    starts: list[float] = []

    async def main() -> None:
        await start(limiter, starts)
        await asyncio.sleep(60)
        await asyncio.gather(*(start(limiter, starts) for _ in range(3)))

    MockClock().run(main())

    assert starts == [0.0, 60.0, 60.5, 61.0]


def test_one_limiter_spaces_the_starts_of_every_task_that_shares_it() -> None:
    limiter = RateLimiter(1.0)
    by_task: dict[str, list[float]] = {"first": [], "second": []}

    async def task(name: str, requests: int) -> None:
        for _ in range(requests):
            await limiter.wait()
            by_task[name].append(clock.monotonic())
            await asyncio.sleep(0.1)  # the request itself

    async def main() -> None:
        await asyncio.gather(task("first", 3), task("second", 3))

    MockClock().run(main())

    starts = sorted(by_task["first"] + by_task["second"])
    assert starts == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert set(by_task["first"]).isdisjoint(by_task["second"])


def test_separate_limiters_do_not_slow_each_other() -> None:
    one, other = RateLimiter(1.0), RateLimiter(1.0)
    starts: list[float] = []

    async def main() -> None:
        await asyncio.gather(start(one, starts), start(other, starts), start(one, starts))

    MockClock().run(main())

    assert sorted(starts) == [0.0, 0.0, 1.0]
