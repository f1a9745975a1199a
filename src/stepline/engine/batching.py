"""Batch mode: a fan-out LLM step's items sent through the provider's batch API.

``mode: batch`` (or ``--batch``) trades latency for price: the items go out as Message
Batches (one request per item, ``custom_id`` from the item key), answered within 24 hours at
half the price of live calls. The order of events, each committed before the next:

1. the items' intent rows and the submission (its requests, no batch id yet);
2. the create request; then the batch id, in one statement;
3. polls, backing off from a second to ``batch_poll``; counts go to the progress line and
   ``items.sqlite`` (``pipeline show`` reads them there);
4. once the batch has ended, its results, matched by ``custom_id`` and committed per item
   like live results (a reply that misses the schema is repaired with live calls).

A run stopped anywhere after step 2 resumes by polling the same batch; one killed between 1
and 2 may have created a batch whose id it never learnt, so those items are sent again and
the resume says how many, as for live calls in flight. Errored, expired and canceled requests
follow ``on_item_error``, or with ``batch_fallback: live`` are asked again live. Items the
response cache already answers never enter a batch.

With ``cache_prompt`` the first item that needs a request is asked live, and its reply
awaited, before any batch is created: it writes the shared prefix to the provider's cache
(for an hour, since a batch may start processing well after its submission), so the batch's
requests read it instead of each writing their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TypeVar

from stepline.context import Item
from stepline.engine.executors import ItemBook, LiveItems
from stepline.errors import BudgetReached, ProviderError, StepFailed, StepLineError
from stepline.faults import crash_point
from stepline.providers.base import LLMRequest
from stepline.providers.batches import (
    COUNTED_OUTCOMES,
    BatchProvider,
    BatchRequest,
    BatchResult,
    custom_ids,
)
from stepline.providers.caller import BatchSent
from stepline.providers.records import CallSite
from stepline.providers.retry import Attempt, with_retries
from stepline.providers.tokens import request_characters
from stepline.spec import LLMParams, LLMStep
from stepline.steps.llm import build_request, finish_llm_step
from stepline.store.batches import BatchLedger
from stepline.store.items import ItemRecord, ItemStatus

FIRST_POLL_S = 1.0
MAX_BATCH_BYTES = 200 * 1024 * 1024
"""Bytes of requests per batch, estimated generously: the API takes at most 256 MB."""
T = TypeVar("T")


@dataclass
class _Pending:
    """An item whose request is in a batch (or about to be)."""

    item: Item
    fingerprint: str
    held_usd: float = 0.0
    request: LLMRequest | None = None  # kept only until the batch is created


@dataclass
class _OpenBatch:
    submission: int
    batch_id: str
    submitted_at: float
    waiting: dict[str, _Pending] = field(default_factory=dict)  # by custom_id
    counts: dict[str, int] = field(default_factory=dict)


class BatchedItems:
    """The executor of a fan-out step in batch mode: its items' requests go to the provider
    in batches, which are polled until they end; an item the cache answers, the first one
    with ``cache_prompt`` (it writes the cache the batch reads) and, with ``batch_fallback:
    live``, one whose batch request failed are run live instead (``LiveItems``)."""

    def __init__(
        self, book: ItemBook, live: LiveItems, provider: BatchProvider, params: LLMParams
    ) -> None:
        assert isinstance(book.step, LLMStep)
        self.book = book
        self.live = live
        live.warm_up = False  # a batch warms the cache up itself: see take
        self.step: LLMStep = book.step
        self.provider = provider
        self.params = params
        self.ledger = BatchLedger(book.store)
        self.log = book.env.log
        self._earlier = {batch.submission: batch for batch in self.ledger.batches(self.step.id)}
        self._open: dict[int, _OpenBatch] = {}
        self._next_submission = max(self._earlier, default=0) + 1
        self._counts: dict[int, dict[str, int]] = {}  # by submission, this execution's
        self._warm_up = params.cache_prompt
        self._chunk: list[_Pending] = []
        self._chunk_bytes = 0

    async def take(self, item: Item, fingerprint: str) -> bool:
        """Put the item's request in the next batch (submitted once full), or run it live."""
        book = self.book
        if book.stopping:
            return False
        request = self._request(item)
        if book.env.llm.has_answer(request, self.params):
            return await self.live.take(item, fingerprint)  # the cache answers it
        if self._warm_up:  # one live request writes the cache the batch reads
            self._warm_up = False
            return await self.live.take(item, fingerprint, alone=True)
        try:
            held = book.env.llm.hold_for_batch(request, self.params, self.log)
        except BudgetReached as exc:
            book.stop_for_budget(exc)
            return False
        self._chunk.append(_Pending(item, fingerprint, held, request))
        self._chunk_bytes += 2 * request_characters(request) + 1024
        if len(self._chunk) >= self.params.batch_size or self._chunk_bytes >= MAX_BATCH_BYTES:
            await self._submit(self._chunk)
            self._chunk, self._chunk_bytes = [], 0
        return True

    async def finish(self) -> None:
        """Submit the last batch, then poll until every batch is collected."""
        chunk, self._chunk = self._chunk, []
        if chunk and self.book.failed_item is None:  # a failure under on_item_error: fail
            await self._submit(chunk)  # stops the step: send no more requests for it
        for pending in chunk if self.book.failed_item is not None else ():
            self.book.env.llm.release_hold(pending.held_usd)
        await self._poll()
        await self.live.finish()

    async def cancel(self) -> None:
        await self.live.cancel()

    def cancel_others(self) -> None:
        self.live.cancel_others()

    def _request(self, item: Item) -> LLMRequest:
        context = replace(self.book.env, item=item).template_context()
        return build_request(self.step, self.params, context)

    def claims(self, item: Item, fingerprint: str, record: ItemRecord | None) -> bool:
        """Whether the item waits in a batch an earlier execution submitted: it is then
        collected from there, never sent again."""
        if not self._earlier or record is None or record.status is not ItemStatus.STARTED:
            return False
        entry = self.ledger.item(self.step.id, item.key)
        if entry is None or entry.fingerprint != fingerprint:
            return False
        batch = self._earlier.get(entry.submission)
        if batch is None or not batch.is_open:
            return False  # never created (killed before its id came back), or collected
        assert batch.batch_id is not None
        opened = self._open.get(batch.submission)
        if opened is None:
            opened = self._open[batch.submission] = _OpenBatch(
                batch.submission, batch.batch_id, batch.submitted_at, counts=dict(batch.counts)
            )
        opened.waiting[entry.custom_id] = _Pending(item, fingerprint)
        return True

    async def _submit(self, chunk: list[_Pending]) -> None:
        """Record the submission, create the batch, record its id; in that order."""
        book, step = self.book, self.step
        submission, self._next_submission = self._next_submission, self._next_submission + 1
        ids = custom_ids(pending.item.key for pending in chunk)
        await asyncio.gather(
            *(
                book.store.start(step.id, p.item.key, p.item.index, p.fingerprint, book.mark)
                for p in chunk
            )
        )
        entries = [(p.item.key, ids[p.item.key], p.fingerprint) for p in chunk]
        await self.ledger.submitting(step.id, submission, entries)
        requests = [BatchRequest(ids[p.item.key], p.request) for p in chunk if p.request]
        try:
            status = await self._call(lambda: self.provider.submit_batch(requests), "submit")
        except StepFailed:
            await self._abandon(submission, chunk)
            raise
        crash_point("batch-created")
        await self.ledger.submitted(step.id, submission, status.id, status.processing_status)
        opened = _OpenBatch(submission, status.id, time.time(), counts=dict(status.counts))
        for pending in chunk:
            pending.request = None
            opened.waiting[ids[pending.item.key]] = pending
        self._open[submission] = opened
        self.log.info("submitted batch %s with %d request(s)", status.id, len(chunk))
        self._show()

    async def _abandon(self, submission: int, chunk: list[_Pending]) -> None:
        """The provider refused the batch, so nothing was sent: forget the intents."""
        await self.ledger.refused(self.step.id, submission)
        for pending in chunk:
            await self.book.store.forget(self.step.id, pending.item.key)
            self.book.env.llm.release_hold(pending.held_usd)

    async def _poll(self) -> None:
        """Poll the open batches, backing off, and collect each one as it ends."""
        delay = min(FIRST_POLL_S, self.params.batch_poll)
        while self._open:
            for opened in list(self._open.values()):
                status = await self._call(
                    partial(self.provider.batch_status, opened.batch_id), "poll"
                )
                crash_point("batch-polled")
                opened.counts = dict(status.counts)
                await self.ledger.progress(
                    self.step.id, opened.submission, status.processing_status, status.counts
                )
                if status.ended:
                    counts = ", ".join(
                        f"{count:,} {name}" for name, count in status.counts.items() if count
                    )
                    self.log.info("batch %s ended: %s", opened.batch_id, counts or "empty")
                    await self._collect(opened)
                    del self._open[opened.submission]
                self._show()
            if self._open:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.params.batch_poll)

    async def _collect(self, opened: _OpenBatch) -> None:
        """Take an ended batch's results, each committed as it is read."""

        async def read_all() -> None:
            async for result in self.provider.batch_results(opened.batch_id):
                pending = opened.waiting.pop(result.custom_id, None)
                if pending is not None:  # else not this execution's (or already taken)
                    await self._settle(pending, result, opened)

        await self._call(read_all, "read the results of")
        for custom_id, pending in list(opened.waiting.items()):
            missing = BatchResult(
                custom_id, "errored", error="the batch's results do not include this request"
            )
            await self._settle(pending, missing, opened)
        opened.waiting.clear()
        await self.ledger.collected(self.step.id, opened.submission)

    async def _settle(self, pending: _Pending, result: BatchResult, opened: _OpenBatch) -> None:
        """One request's result: the item's output, its failure, or a live retry."""
        book, item = self.book, pending.item
        env = replace(book.env, item=item)
        request = self._request(item)
        sent = BatchSent(
            site=CallSite(self.step.id, item.key),
            params=self.params,
            request=request,
            batch_id=opened.batch_id,
            submitted_at=opened.submitted_at,
            held_usd=pending.held_usd,
        )
        if result.outcome == "succeeded":
            completion = env.llm.batch_answered(sent, result, self.log)
            try:
                outcome = await finish_llm_step(self.step, env, self.params, request, completion)
            except StepLineError as exc:
                reason = exc.reason if isinstance(exc, StepFailed) else exc.message
                await book.item_failed(item, pending.fingerprint, reason)
            else:
                await book.item_done(item, pending.fingerprint, outcome)
        else:
            message = _failure_text(result)
            env.llm.batch_failed(sent, message, result.status_code)
            if self.params.batch_fallback == "live":
                self.log.info('item "%s": %s; asking live instead', item.key, message)
                await self._live(item, pending.fingerprint)
                return
            await book.item_failed(item, pending.fingerprint, message)
        book.show_progress()

    async def _live(self, item: Item, fingerprint: str) -> None:
        await self.live.take(item, fingerprint)

    async def _call(self, work: Callable[[], Awaitable[T]], what: str) -> T:
        """One batch API call, retried like an LLM call; a failure fails the step (its
        batches stay open and a resume polls them)."""

        def on_retry(failed: Attempt) -> None:
            self.log.warning(
                "batch API: could not %s a batch (%s); retrying in %.2fs",
                what,
                failed.error.status_code or "no response",
                failed.wait_s,
            )

        try:
            return await with_retries(work, self.params.retry, on_retry=on_retry)
        except ProviderError as exc:
            raise StepFailed(
                self.step.id,
                f"could not {what} a batch: {exc.message}",
                hint=exc.hint or "finished items and open batches are kept; resume to go on",
            ) from exc

    def _show(self) -> None:
        """Put the batches' request counts on the step's progress line."""
        for opened in self._open.values():
            self._counts[opened.submission] = opened.counts
        totals = {name: 0 for name in COUNTED_OUTCOMES}
        for counts in self._counts.values():
            for name, value in counts.items():
                totals[name] = totals.get(name, 0) + value
        self.book.batch_counts = {**totals, "batches": len(self._counts), "open": len(self._open)}
        self.book.show_progress()


def _failure_text(result: BatchResult) -> str:
    if result.outcome == "expired":
        return "the batch expired before this request was processed (24 hours)"
    if result.outcome == "canceled":
        return "the batch was canceled before this request was processed"
    return f"the batch request failed: {result.error or 'no reason given'}"
