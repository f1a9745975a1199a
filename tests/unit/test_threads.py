"""run_in_thread: daemon workers that are kept between calls and never block each other."""

from __future__ import annotations

import asyncio
import threading

import pytest

from stepline.threads import run_in_thread


def test_sequential_calls_reuse_one_worker():
    async def calls() -> list[threading.Thread]:
        return [await run_in_thread(threading.current_thread) for _ in range(200)]

    ran_in = asyncio.run(calls())  # the thread objects themselves, so none is recycled

    alive = [thread for thread in threading.enumerate() if thread.name == "stepline-step"]
    # One worker, or a few left idle by earlier tests in this process; never one per call.
    assert len({id(thread) for thread in ran_in}) <= max(1, len(alive)) < 50
    assert ran_in[0].daemon and ran_in[0].name == "stepline-step"


def test_a_hung_call_that_was_abandoned_does_not_hold_up_the_next_ones():
    release = threading.Event()

    async def scenario() -> list[str]:
        hung = asyncio.ensure_future(run_in_thread(release.wait))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(hung), 0.05)
        hung.cancel()
        others = await asyncio.wait_for(
            asyncio.gather(*(run_in_thread(str, n) for n in range(5))), timeout=5
        )
        return list(others)

    try:
        assert asyncio.run(scenario()) == ["0", "1", "2", "3", "4"]
    finally:
        release.set()


def test_concurrent_calls_run_at_the_same_time():
    barrier = threading.Barrier(4, timeout=5)  # passes only if 4 calls wait at once

    async def together() -> list[int]:
        return list(await asyncio.gather(*(run_in_thread(barrier.wait) for _ in range(4))))

    assert sorted(asyncio.run(together())) == [0, 1, 2, 3]


def test_an_exception_reaches_the_caller():
    def broken() -> None:
        raise ValueError("bad helper")

    with pytest.raises(ValueError, match="bad helper"):
        asyncio.run(run_in_thread(broken))
