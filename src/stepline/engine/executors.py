"""Where a fan-out step's items run, behind one small protocol.

``FanOut`` (``fanout.py``) owns the only item loop: it reads the items, fingerprints them,
reuses their checkpoints, and hands each item that must run to the step's executor with
``take``. The executor runs it (here: live, as async calls or in worker threads, at most
``concurrency`` at once; ``batching.py``: in provider batches) and reports each end back to
the loop's bookkeeping, the ``ItemBook``, which commits it, counts it and passes it on. An
executor never writes a checkpoint's result or a tally itself, so every executor records the
same run.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Protocol

from stepline import clock
from stepline.context import Item
from stepline.engine.retries import attempts_of
from stepline.errors import BudgetReached, SpecError, StepFailed, StepLineError
from stepline.faults import crash_point
from stepline.spec import StepBase
from stepline.steps import StepEnvironment, StepOutcome, execute_step
from stepline.store.items import ItemRecord, ItemStore

COMMITS_WAITING = 256
"""How many finished items may wait for their commit beyond those in flight: enough for the
writer thread's transactions to stay large, few enough that memory stays flat."""


class ItemBook(Protocol):
    """A fan-out's bookkeeping, as its executors see it."""

    step: StepBase
    env: StepEnvironment
    store: ItemStore
    mark: str  # this execution's rows in items.sqlite
    batch_counts: dict[str, int] | None  # batch mode: shown on the progress line

    @property
    def stopping(self) -> bool: ...

    @property
    def failed_item(self) -> str | None: ...

    def stop(self) -> None: ...

    def stop_for_budget(self, reached: BudgetReached) -> None: ...

    async def item_done(
        self, item: Item, fingerprint: str, outcome: StepOutcome, *, attempts: int = 1
    ) -> None: ...

    async def item_failed(
        self, item: Item, fingerprint: str, message: str, *, attempts: int = 1
    ) -> None: ...

    def show_progress(self) -> None: ...


class ItemExecutor(Protocol):
    """Runs the items a fan-out hands it and reports each end to the ``ItemBook``."""

    def claims(self, item: Item, fingerprint: str, record: ItemRecord | None) -> bool:
        """Whether the item is already in this executor's hands from an earlier execution
        (a batch still open): the loop then neither reuses nor hands it over."""
        ...

    async def take(self, item: Item, fingerprint: str) -> bool:
        """Start the item, or False when the step is stopping (the loop ends)."""
        ...

    async def finish(self) -> None:
        """Wait until every item taken has ended and been reported."""
        ...

    async def cancel(self) -> None:
        """Stop every item in flight (Ctrl-C, a failed stream); they stay unfinished."""
        ...

    def cancel_others(self) -> None:
        """Stop every item in flight but the caller's (``on_item_error: fail``)."""
        ...


def item_error(exc: StepLineError) -> str:
    """What went wrong with one item, without the step name the step's own error adds."""
    return exc.reason if isinstance(exc, StepFailed) else exc.message


class LiveItems:
    """Items run here and now: the step's executor (an LLM call, a Python function, a
    program) per item, under its timeout and ``retry:``, at most ``concurrency`` at once.

    With ``cache_prompt``, the first item runs alone: it writes the prompt cache the others
    then read instead of each paying for a write.
    """

    def __init__(
        self, book: ItemBook, concurrency: int, *, records_intent: bool, warm_up: bool
    ) -> None:
        self.book = book
        self.records_intent = records_intent  # only LLM calls cost money twice
        self._limit = asyncio.Semaphore(concurrency)
        self.warm_up = warm_up  # the next item runs alone
        self._tasks: set[asyncio.Task[None]] = set()
        self._crash: Exception | None = None
        # An item gives its slot back before its commit, so items waiting for the writer
        # thread are bounded apart: without a bound, quick items outpacing the writer pile up
        # (2,845 tasks for a no-op step over a million records at concurrency 8, 14 MiB).
        self._max_tasks = 2 * concurrency + COMMITS_WAITING
        self.busy_s = 0.0  # the items' own time, retries included (a mean per item for show)

    def claims(self, item: Item, fingerprint: str, record: ItemRecord | None) -> bool:
        return False

    async def take(self, item: Item, fingerprint: str, *, alone: bool = False) -> bool:
        """Start the item once a slot is free (``alone``: and wait for it to end)."""
        await self._limit.acquire()
        while len(self._tasks) >= self._max_tasks:  # finished items waiting for their commit
            await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)
        if self.book.stopping:
            self._limit.release()
            return False
        task = asyncio.create_task(self._run_one(item, fingerprint, _Slot(self._limit)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if alone or self.warm_up:
            self.warm_up = False
            await asyncio.wait({task})
        return True

    async def finish(self) -> None:
        """Wait for every item taken; a bug in one of them surfaces here."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))
        if self._crash is not None:
            raise self._crash

    async def cancel(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def cancel_others(self) -> None:
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()

    async def _run_one(self, item: Item, fingerprint: str, slot: _Slot) -> None:
        try:
            await self._run_item(item, fingerprint, slot)
        except Exception as exc:  # a bug, not an item failure: stop and let it surface
            self._crash = self._crash or exc
            self.book.stop()
        finally:
            slot.release()

    async def _run_item(self, item: Item, fingerprint: str, slot: _Slot) -> None:
        """Run one item and report its end. Its concurrency slot is given back before the
        commit, so the next item's intent row joins this item's result in one transaction."""
        book = self.book
        step, store = book.step, book.store
        if self.records_intent:
            await store.start(step.id, item.key, item.index, fingerprint, book.mark)
            crash_point("item-intent-committed")
        env = replace(book.env, item=item)
        started = clock.monotonic()
        try:  # the timeout and the step's retry: apply to each item
            outcome, attempts = await attempts_of(
                step, lambda: run_attempt(step, env), book.env.log, item_key=item.key
            )
        except SpecError as exc:  # the step cannot run at all here: no item's fault
            slot.release()
            self._crash = self._crash or exc
            book.stop()
            return
        except BudgetReached as exc:  # not the item's fault: stop launching, keep it unrun
            slot.release()
            book.stop_for_budget(exc)
            if self.records_intent:  # its call was never sent: no intent to report later
                await store.forget(step.id, item.key)
            return
        except StepLineError as exc:
            slot.release()
            attempts = getattr(exc, "attempts", 1)
            self.busy_s += clock.monotonic() - started
            await book.item_failed(item, fingerprint, item_error(exc), attempts=attempts)
        else:
            slot.release()
            self.busy_s += clock.monotonic() - started
            await book.item_done(item, fingerprint, outcome, attempts=attempts)
        book.show_progress()


class _Slot:
    """A concurrency slot, released at most once (early, before the commit, or at the end)."""

    def __init__(self, limit: asyncio.Semaphore) -> None:
        self._limit: asyncio.Semaphore | None = limit

    def release(self) -> None:
        if self._limit is not None:
            self._limit.release()
            self._limit = None


async def run_attempt(step: StepBase, env: StepEnvironment) -> StepOutcome:
    """One attempt of one item, on the step's executor."""
    if env.executors is None:
        return await execute_step(step, env)
    return await env.executors.run(step, env)
