"""Fan-out: run one step once per item of a list, concurrently, checkpointing every item.

The list comes from ``for_each`` (a ``{{ expression }}``, ``input.lines`` or
``input.records``). Each item runs the step's own executor with ``item``, ``item_index`` and
``item_key`` in its context, at most ``concurrency`` at a time. Every finished item is
committed to ``items.sqlite`` at once, so a failure, a Ctrl-C or a kill loses at most the items
in flight, and the next run reuses every item whose fingerprint (the step's spec, what it reads
besides the list, and the item itself) is unchanged.

Where the items come from and how they are keyed is ``engine/items.py``.

``on_item_error`` decides what a failed item does to the step: ``fail`` stops launching items,
cancels those in flight and fails the step (finished items stay committed); ``skip`` leaves the
item out of the output; ``collect`` puts ``{"error": ..., "item_key": ...}`` in its place.
With ``skip`` and ``collect`` the step still fails once more items failed than
``max_failed_items`` allows (unset: when every item failed): an output made only of failures
is no result, and a downstream step should not take it for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import secrets
from collections.abc import AsyncGenerator, Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from stepline import clock
from stepline.context import Item
from stepline.engine.batching import BatchedItems
from stepline.engine.executors import ItemExecutor, LiveItems
from stepline.engine.fingerprint import fingerprint, spec_hash
from stepline.engine.items import SeenKeys, item_key, keeps, resolve_items
from stepline.engine.references import StepNeeds
from stepline.engine.streams import ItemStream
from stepline.errors import BudgetReached, StepFailed
from stepline.hashing import hash_value
from stepline.spec import LLMStep, PipelineSpec, PythonStep, ShellStep, StepBase
from stepline.steps import StepEnvironment, StepOutcome
from stepline.store.items import LOOKUP_BATCH, ItemRecord, ItemStatus, ItemStore
from stepline.store.jsonl import RowStream
from stepline.store.state import INPUT_KEY
from stepline.templates import ITEM_NAMES, references

SUMMED_METRICS = (
    "attempts",
    "input_tokens",
    "output_tokens",
    "cache_write_tokens",
    "cache_read_tokens",
)
MAX_LISTED_FAILURES = 20
CONFIRM_BATCH = 500  # reused items confirmed per commit
JSONL_ABOVE_ITEMS = 10_000
"""Without ``output_format``, a fan-out output over this many items is written as JSON Lines,
streamed from the checkpoints, instead of one JSON list built in memory."""
FLATTENED_STRIDE = 1_000_000
"""A flattened result's elements stream on at ``item index x this + their place``: positions
that keep the output's order however the items finish (the receiving step cannot use
``item_index``, which these positions are not)."""


@dataclass(frozen=True)
class FanOutProgress:
    """How far a fan-out step has come (for progress displays).

    ``done`` counts reused items too; ``rate_per_s`` and ``eta_s`` count only items run now
    (no ``eta_s`` in batch mode: a batch's results all arrive when it ends).
    """

    total: int
    done: int
    failed: int
    reused: int
    filtered: int = 0  # left out by the step's filter (not in total)
    rate_per_s: float | None = None
    eta_s: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0
    batch: dict[str, int] | None = None  # batch mode: open batches and their request counts


ShowFanOut = Callable[[FanOutProgress], None]


async def _each(items: Generator[Item]) -> AsyncGenerator[Item]:
    """The items as an async stream; closing it closes ``items`` (and what they read)."""
    with contextlib.closing(items):
        for item in items:
            yield item


def collected_failure(key: str, error: str | None) -> dict[str, Any]:
    """What ``on_item_error: collect`` puts in a failed item's place in the output."""
    return {"error": error, "item_key": key}


def is_collected_failure(value: Any) -> bool:
    """Whether an output element is one ``collected_failure`` made."""
    return isinstance(value, dict) and set(value) == {"error", "item_key"}


def _system_reads_item(step: LLMStep) -> bool:
    """Whether the step's system prompt differs from item to item (it is cached first)."""
    if step.system is None:
        return False
    return bool(references(step.system, where=f'step "{step.id}" system').names & ITEM_NAMES)


def item_base_fingerprint(
    spec: PipelineSpec,
    step: StepBase,
    needs: StepNeeds,
    variables: Mapping[str, Any],
    *,
    output_hashes: Mapping[str, str],
    input_hash: str,
) -> str:
    """What every item of a fan-out step depends on besides itself: the step's spec and the
    outputs (``output_hashes``: those of the steps before it) and input it reads other than
    through ``for_each``. The run and ``--dry-run`` both compute it here, so the dry run
    prices exactly the items the run would not reuse."""
    names = set(output_hashes) if needs.reads_everything else set(needs.steps)
    reads = {
        name: output_hashes[name]
        for name in sorted(names - needs.item_source)
        if name in output_hashes
    }
    if needs.input and not needs.input_via_items:
        reads[INPUT_KEY] = input_hash
    return fingerprint(spec_hash(spec, step, needs, variables, for_items=True), reads)


@dataclass(frozen=True)
class ItemIdentity:
    """How a fan-out step's items are fingerprinted for reuse: the step's base fingerprint,
    with each item's position where templates use ``item_index``, and the whole list's hash
    (``list_hashes``) for an item whose function read the list itself."""

    base: str
    uses_index: bool = False
    list_hashes: Mapping[str, str] = field(default_factory=dict)

    def of(self, item: Item, *, whole_list: bool = False) -> str:
        identity: dict[str, Any] = {"step": self.base, "item": item.value}
        if self.uses_index:
            identity["index"] = item.index
        if whole_list:
            identity["list"] = dict(self.list_hashes)
        return hash_value(identity)

    def holds(self, item: Item, fingerprint: str, record: ItemRecord | None) -> bool:
        """Whether the item's checkpoint still holds (its fingerprint is unchanged);
        ``fingerprint`` is ``of(item)``."""
        if record is None:
            return False
        if record.fingerprint == fingerprint:
            return True
        return bool(self.list_hashes) and record.fingerprint == self.of(item, whole_list=True)


def allowed_failures(step: StepBase, total: int | None) -> int | None:
    """How many failed items a ``skip`` or ``collect`` step may end with: ``max_failed_items``
    (a percentage of ``total``, rounded down), else all but one. None while it depends on a
    total not known yet (items streamed from the step before)."""
    limit = step.max_failed_items
    if isinstance(limit, int):
        return limit
    if total is None:
        return None
    if limit is None:
        return max(total - 1, 0)
    return math.floor(Fraction(limit.removesuffix("%")) * total / 100)


def too_many_failures(step: StepBase, failed: int, total: int, *, unrun: int = 0) -> str:
    """Why the step fails: how many of how many items failed, the limit they passed, and
    how many items it did not launch once past it."""
    limit = step.max_failed_items
    if limit is None:
        text = f"all {total} items failed"
    else:
        allowed = allowed_failures(step, total)
        of = f" ({allowed} of {total})" if isinstance(limit, str) else ""
        text = f"{failed} of {total} items failed, more than max_failed_items: {limit}{of}"
    return text + (f"; {unrun} not run" if unrun > 0 else "")


@dataclass
class _Tally:
    failures: dict[int, tuple[str, str]] = field(default_factory=dict)  # index -> (key, error)
    kept_failures: set[int] = field(default_factory=set)  # failed before; --skip-failed
    metrics: dict[str, Any] = field(default_factory=dict)
    done: int = 0
    reused: int = 0
    retries: int = 0  # attempts past the first, of the items this execution ran (retry:)


class FanOut:
    """One fan-out step's run over its items."""

    def __init__(
        self,
        step: StepBase,
        env: StepEnvironment,
        store: ItemStore,
        *,
        base_fingerprint: str,
        list_hashes: dict[str, str] | None = None,
        uses_index: bool = False,
        concurrency: int,
        retry_failed: bool = True,
        reuse_items: bool = True,
        show: ShowFanOut | None = None,
        inbound: ItemStream | None = None,
        outbound: ItemStream | None = None,
    ) -> None:
        self.step = step
        self.env = env
        self.store = store
        self.identity = ItemIdentity(base_fingerprint, uses_index, list_hashes or {})
        self.list_hashes = self.identity.list_hashes
        self.concurrency = concurrency
        self.retry_failed = retry_failed
        self.reuse_items = reuse_items
        self.show = show
        self.inbound = inbound  # stream_items: the items arrive from the step before
        self.outbound = outbound  # the next step streams this step's results
        self.mark = secrets.token_hex(8)  # this execution's rows in items.sqlite
        self._confirmations: list[asyncio.Future[None]] = []
        self._in_flight_before = 0
        self.tally = _Tally()
        self.records_intent = isinstance(step, LLMStep)  # only LLM calls cost money twice
        # cache_prompt: the first item runs alone and writes the prompt cache; the others
        # read it instead of each paying for a write of their own.
        caching = isinstance(step, LLMStep) and env.spec.llm_params(step).cache_prompt
        if caching and isinstance(step, LLMStep) and _system_reads_item(step):
            env.log.warning(
                "cache_prompt: the system prompt uses item variables, so it differs from item "
                "to item and every request writes a cache entry no other can read; move the "
                "per-item part into the prompt"
            )
        self._stopping = False
        self._budget_reached: BudgetReached | None = None
        self._failed_item: str | None = None
        self._looked_up: dict[str, ItemRecord] | None = None  # see _looking_up
        self._total = 0
        self._filtered = 0  # items the step's filter left out
        self._started = clock.monotonic()
        self.batch_counts: dict[str, int] | None = None
        self.live = LiveItems(
            self,
            concurrency,
            records_intent=self.records_intent,
            warm_up=bool(caching) and concurrency > 1,
        )
        self.executor: ItemExecutor = self._batch_mode() or self.live

    def _batch_mode(self) -> BatchedItems | None:
        """The batch run of an LLM step in ``mode: batch`` whose provider has a batch API
        (a cassette answers at once, so replayed steps stay live)."""
        if not isinstance(self.step, LLMStep):
            return None
        params = self.env.spec.llm_params(self.step)
        if params.mode != "batch":
            return None
        provider = self.env.llm.batch_provider(params)
        if provider is None:
            self.env.log.info("mode: batch: answered live (a cassette replays this step)")
            return None
        return BatchedItems(self, self.live, provider, params)

    @property
    def stopping(self) -> bool:
        """Whether to start no more items: the step will fail or pause, or the step that
        streams this one's items has given up."""
        return self._stopping or (self.outbound is not None and self.outbound.abandoned)

    def stop(self) -> None:
        """Start no more items (a bug in one of them will surface when the rest settle)."""
        self._stopping = True

    @property
    def failed_item(self) -> str | None:
        """The key of the item whose failure stopped the step (``on_item_error: fail``, or
        the failure past ``max_failed_items``)."""
        return self._failed_item

    def stop_for_budget(self, reached: BudgetReached) -> None:
        """Launch nothing more; the step ends paused for the budget once the rest settles."""
        self._budget_reached = self._budget_reached or reached
        self._stopping = True

    async def run(self) -> StepOutcome:
        try:
            outcome = await self._run()
        except BaseException:
            if self.outbound is not None:
                await self.outbound.close(failed=True)
            if self.inbound is not None:
                await self.inbound.abandon()
            raise
        if self.outbound is not None:
            await self.outbound.close(failed=False)
        return outcome

    async def _run(self) -> StepOutcome:
        # A step with no checkpoints yet (its first execution) looks none up item by item.
        self.reuse_items = self.reuse_items and self.store.has_rows(self.step.id)
        if self.inbound is None:
            resolved = resolve_items(self.step, self.env)
            self._total, self._filtered, items = resolved.count, resolved.filtered, resolved.items
            arrivals: AsyncGenerator[Item] = _each(
                self._looking_up(items) if self.reuse_items else items
            )
        else:
            arrivals = self._keyed(self.inbound)
        self.show_progress()
        await self._run_all(arrivals)
        await self._confirmed()
        if self._budget_reached is not None:
            raise self._budget_reached
        if self._in_flight_before:
            self.env.log.warning(
                "%d item(s) were cut short last time (in flight when the run stopped or the "
                "step failed); their LLM calls were sent again",
                self._in_flight_before,
            )
        if self.outbound is not None and self.outbound.abandoned:
            raise StepFailed(
                self.step.id,
                "stopped early: the next step, which streams its items, failed",
                hint="finished items are kept; fix that step and resume",
            )
        if self.inbound is not None and self.inbound.producer_failed:
            raise StepFailed(
                self.step.id,
                f'step "{self.inbound.producer}", whose items stream into this one, failed',
                hint="finished items are kept; fix that step and resume",
            )
        return self._outcome()

    async def _keyed(self, inbound: ItemStream) -> AsyncGenerator[Item]:
        """Streamed results as items, keyed as they arrive (duplicate keys fail the step)."""
        base = self.env.template_context()  # the same for every item
        with contextlib.closing(SeenKeys()) as seen:
            async for index, value in inbound:
                if self.step.filter is not None and not keeps(self.step, base, value, index):
                    self._filtered += 1
                    continue
                key = item_key(self.step, base, value, index)
                item = Item(value, index, key)
                first = seen.add(item.key, index)
                if first is not None:  # streamed items may arrive out of order
                    low, high = sorted((first, index))
                    raise StepFailed(
                        self.step.id,
                        f'duplicate item keys: "{item.key}" (items {low + 1} and {high + 1})',
                        hint="make item_key unique per item",
                    )
                self._total += 1
                yield item

    def _looking_up(self, items: Generator[Item]) -> Generator[Item]:
        """The items, with their checkpoints looked up ``LOOKUP_BATCH`` at a time ahead of
        them: one query per batch instead of one per item (the read before an item runs is
        of an earlier execution's rows, which this one never writes for a later key)."""
        while batch := list(itertools.islice(items, LOOKUP_BATCH)):
            self._looked_up = self.store.lookup_many(self.step.id, [each.key for each in batch])
            yield from batch
        self._looked_up = None

    def checkpoint(self, item: Item, fingerprint: str) -> ItemRecord | None:
        """The item's checkpoint from an earlier execution, if it still holds."""
        if not self.reuse_items:
            return None
        if self._looked_up is not None:
            previous = self._looked_up.get(item.key)
        else:  # items streamed from the step before: they come one at a time
            previous = self.store.lookup(self.step.id, item.key)
        return self._checkpoint(item, fingerprint, previous)

    def fingerprint(self, item: Item, *, whole_list: bool = False) -> str:
        """The item's identity for reuse (see ``ItemIdentity``)."""
        return self.identity.of(item, whole_list=whole_list)

    def _checkpoint(
        self, item: Item, fingerprint: str, record: ItemRecord | None
    ) -> ItemRecord | None:
        """The item's checkpoint when it still holds (its fingerprint is unchanged)."""
        return record if self.identity.holds(item, fingerprint, record) else None

    async def reused(self, item: Item, record: ItemRecord | None) -> bool:
        """Take the item from its checkpoint if it can be; True when it needs no run."""
        if record is None:
            return False
        if record.status is ItemStatus.DONE:
            await self._confirm(item)
            self._add_metrics(record.metrics or {})
            self.tally.reused += 1
            if self.outbound is not None:
                await self._emit(item.index, self.store.result(self.step.id, item.key))
            return True
        if record.status is ItemStatus.FAILED and not self.retry_failed:
            await self._confirm(item)
            self.tally.failures[item.index] = (item.key, record.error or "failed")
            self.tally.kept_failures.add(item.index)
            await self._emit_failure(item)
            return True
        self._in_flight_before += record.status is ItemStatus.STARTED
        return False

    async def _confirm(self, item: Item) -> None:
        """Mark a reused checkpoint as this execution's, waiting only once per batch."""
        self._confirmations.append(
            self.store.confirm(self.step.id, item.key, item.index, self.mark)
        )
        if len(self._confirmations) >= CONFIRM_BATCH:
            await self._confirmed()

    async def _confirmed(self) -> None:
        batch, self._confirmations = self._confirmations, []
        await asyncio.gather(*batch)

    async def _emit(self, index: int, value: Any) -> None:
        """Hand a result to the step that streams this one's items; with ``flatten``, each
        element of a list, at a position that keeps them in the output's order."""
        if self.outbound is None:
            return
        if not self.step.flatten:
            await self.outbound.put(index, value)
            return
        if not isinstance(value, list):
            await self.outbound.put(index * FLATTENED_STRIDE, value)
            return
        if len(value) > FLATTENED_STRIDE:
            raise StepFailed(
                self.step.id,
                f"item {index + 1} gave {len(value):,} results to flatten into a streamed step, "
                f"more than {FLATTENED_STRIDE:,}",
                hint="split it into more items, or remove stream_items from the next step",
            )
        for offset, element in enumerate(value):
            await self.outbound.put(index * FLATTENED_STRIDE + offset, element)

    async def _emit_failure(self, item: Item) -> None:
        """With ``collect`` a failed item's error record flows on, as it would in the output."""
        if self.step.on_item_error == "collect":
            error = self.tally.failures[item.index][1]
            await self._emit(item.index, collected_failure(item.key, error))

    async def _run_all(self, arrivals: AsyncGenerator[Item]) -> None:
        """The item loop: reuse what the checkpoints answer, hand the rest to the executor
        until it refuses one (the step is stopping), then wait for all it took."""
        executor = self.executor
        try:
            async with contextlib.aclosing(arrivals):  # stopping early closes the input file
                async for item in arrivals:
                    fingerprint = self.fingerprint(item)
                    record = self.checkpoint(item, fingerprint)
                    if executor.claims(item, fingerprint, record):
                        continue
                    if await self.reused(item, record):
                        self.show_progress()
                        continue
                    if not await executor.take(item, fingerprint):
                        break
            await executor.finish()
        except BaseException:  # Ctrl-C, or the inbound stream failed: cancel what runs
            await executor.cancel()
            raise

    async def item_failed(
        self, item: Item, fingerprint: str, message: str, *, attempts: int = 1
    ) -> None:
        """Commit a failed item; with ``on_item_error: fail`` stop launching and cancel the
        items in flight."""
        step = self.step
        self.tally.retries += attempts - 1
        self.tally.failures[item.index] = (item.key, message)
        self.env.log.warning('item "%s" failed: %s', item.key, message)
        if step.on_item_error == "fail" and not self._stopping:
            self._stopping = True
            self._failed_item = item.key
            self.executor.cancel_others()
            if self.inbound is not None:  # the step feeding this one stops launching now
                await self.inbound.abandon()
        elif not self._stopping and self._past_limit():
            await self._stop_over_limit(item)
        await self.store.fail(step.id, item.key, item.index, fingerprint, message, self.mark)
        await self._emit_failure(item)

    def _past_limit(self) -> bool:
        """Whether more items failed than the step may end with (its total known or not)."""
        total = self._total if self.inbound is None else None
        allowed = allowed_failures(self.step, total)
        return allowed is not None and len(self.tally.failures) > allowed

    async def _stop_over_limit(self, item: Item) -> None:
        """Past ``max_failed_items`` the step will fail: launch nothing more (the items in
        flight finish and are kept), so no more is spent on a step that cannot complete."""
        self._stopping = True
        self._failed_item = item.key
        if self.inbound is not None:
            await self.inbound.abandon()

    async def item_done(
        self, item: Item, fingerprint: str, outcome: StepOutcome, *, attempts: int = 1
    ) -> None:
        """Commit a finished item's result and pass it on."""
        self.tally.retries += attempts - 1
        read_list = bool(outcome.read_steps and outcome.read_steps & set(self.list_hashes))
        await self.store.finish(
            self.step.id,
            item.key,
            item.index,
            self.fingerprint(item, whole_list=True) if read_list else fingerprint,
            outcome.value,
            outcome.metrics,
            self.mark,
            durable=self.records_intent,
        )
        self._add_metrics(outcome.metrics)
        self.tally.done += 1
        await self._emit(item.index, outcome.value)

    def _add_metrics(self, metrics: dict[str, Any]) -> None:
        totals = self.tally.metrics
        for name in SUMMED_METRICS:
            if isinstance(metrics.get(name), int):
                totals[name] = totals.get(name, 0) + metrics[name]
        if "cost_usd" in metrics:
            cost, so_far = metrics["cost_usd"], totals.get("cost_usd", 0.0)
            totals["cost_usd"] = None if cost is None or so_far is None else so_far + cost

    def _outcome(self) -> StepOutcome:
        tally, step = self.tally, self.step
        failures = tally.failures
        fresh = sorted(set(failures) - tally.kept_failures)  # --skip-failed leaves out the rest
        if fresh and step.on_item_error == "fail":
            key, error = failures[fresh[0]]
            raise StepFailed(
                step.id,
                f'{len(failures)} of {self._total} items failed; item "{key}": {error}',
                hint="finished items are kept; fix the cause and resume (failed items run "
                "again), or set on_item_error: skip or collect",
            )
        allowed = allowed_failures(step, self._total)
        if step.on_item_error != "fail" and allowed is not None and len(failures) > allowed:
            key, error = failures[min(failures)]
            unrun = self._total - tally.done - tally.reused - len(failures)
            reason = too_many_failures(step, len(failures), self._total, unrun=unrun)
            raise StepFailed(
                step.id,
                f'{reason}; item "{key}": {error}',
                hint="finished items are kept; fix the cause and resume (only the failed and "
                "unfinished items run), or raise max_failed_items",
            )
        jsonl = step.output_format == "jsonl" or (
            step.output_format is None and self._total > JSONL_ABOVE_ITEMS
        )
        value: Any = RowStream(self._results) if jsonl else list(self._results())
        metrics = {
            **tally.metrics,
            "items": self._total,
            "items_done": tally.done,
            "items_reused": tally.reused,
            "items_failed": len(failures),
        }
        if step.filter is not None:
            metrics["items_filtered"] = self._filtered
        if isinstance(step, PythonStep | ShellStep) and self.live.busy_s:
            metrics["item_seconds"] = round(self.live.busy_s, 3)
        if tally.retries:
            metrics["item_retries"] = tally.retries
        if failures:
            metrics["failed_items"] = [
                {"item_key": key, "error": error}
                for key, error in (failures[index] for index in sorted(failures))
            ][:MAX_LISTED_FAILURES]
        return StepOutcome(value=value, metrics=metrics)

    def _results(self) -> Iterator[Any]:
        """This execution's results in input order, read back from the checkpoints."""
        for record in self.store.marked(self.step.id, self.mark):
            if record.status is ItemStatus.DONE:
                if self.step.flatten and isinstance(record.result, list):
                    yield from record.result
                else:
                    yield record.result
            elif self.step.on_item_error == "collect":
                yield collected_failure(record.key, record.error)

    def show_progress(self) -> None:
        if self.show is None:
            return
        tally = self.tally
        finished_now = tally.done + len(tally.failures) - len(tally.kept_failures)
        elapsed = clock.monotonic() - self._started
        rate = finished_now / elapsed if finished_now and elapsed > 0 else None
        remaining = self._total - tally.done - tally.reused - len(tally.failures)
        self.show(
            FanOutProgress(
                total=self._total,
                done=tally.done + tally.reused,
                failed=len(tally.failures),
                reused=tally.reused,
                filtered=self._filtered,
                rate_per_s=rate,
                eta_s=remaining / rate if rate and self.batch_counts is None else None,
                input_tokens=tally.metrics.get("input_tokens", 0),
                output_tokens=tally.metrics.get("output_tokens", 0),
                cost_usd=tally.metrics.get("cost_usd", 0.0),
                batch=self.batch_counts,
            )
        )
