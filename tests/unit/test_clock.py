"""The mock clock the engine tests run on, and stepline's one clock reading."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from stepline import clock
from stepline.threads import run_in_thread
from tests.fakes.clock import MockClock


def test_a_sleep_takes_exactly_its_time_on_the_clock() -> None:
    async def main() -> tuple[float, float]:
        started = clock.monotonic()
        await asyncio.sleep(3600)
        return started, clock.monotonic()

    assert MockClock(start=50.0).run(main()) == (50.0, 3650.0)


def test_timers_fire_in_order_of_their_deadlines() -> None:
    fired: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        fired.append((name, clock.monotonic()))

    async def main() -> None:
        await asyncio.gather(sleeper("slow", 5), sleeper("fast", 1), sleeper("mid", 2.5))

    MockClock().run(main())
    assert fired == [("fast", 1.0), ("mid", 2.5), ("slow", 5.0)]


def test_a_timeout_fires_at_its_deadline() -> None:
    async def main() -> float:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(30):
                await asyncio.sleep(31)
        return clock.monotonic()

    assert MockClock().run(main()) == 30.0


def test_time_stands_still_while_work_is_ready() -> None:
    async def busy() -> float:
        started = clock.monotonic()
        for _ in range(1000):
            await asyncio.sleep(0)
        return clock.monotonic() - started

    clock_ = MockClock()
    assert clock_.run(busy()) == 0.0
    assert clock_.jumps == 0


def test_a_worker_thread_is_waited_for_in_real_time_when_no_timer_is_set() -> None:
    release = threading.Event()

    def work() -> str:
        release.wait(30)
        return "done"

    async def main() -> tuple[str, float]:
        threading.Timer(0.05, release.set).start()
        return await run_in_thread(work), clock.monotonic()

    assert MockClock().run(main()) == ("done", 0.0)


def test_socket_data_wakes_the_loop_before_a_far_timer() -> None:
    """I/O that is ready is handled before the clock jumps to a timer."""
    left, right = socket.socketpair()

    async def main() -> tuple[bytes, float]:
        loop = asyncio.get_running_loop()
        reader, _ = await asyncio.open_connection(sock=left)
        far = loop.create_task(asyncio.sleep(60))
        right.sendall(b"ping")
        data = await reader.readexactly(4)
        at = clock.monotonic()
        far.cancel()
        return data, at

    try:
        assert MockClock(autojump_threshold=1.0).run(main()) == (b"ping", 0.0)
    finally:
        left.close()
        right.close()


def test_jump_moves_time_by_hand_and_never_back() -> None:
    mock = MockClock()
    mock.jump(10)
    assert mock.now == 10
    with pytest.raises(ValueError):
        mock.jump(-1)


def test_outside_a_loop_the_clock_is_the_monotonic_one() -> None:
    before = time.monotonic()
    assert before <= clock.monotonic() <= time.monotonic()


def test_on_an_ordinary_loop_the_clock_is_the_loops() -> None:
    async def main() -> tuple[float, float]:
        return asyncio.get_running_loop().time(), clock.monotonic()

    loop_time, ours = asyncio.run(main())
    assert 0 <= ours - loop_time < 1
