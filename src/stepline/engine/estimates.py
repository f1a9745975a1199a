"""What ``--dry-run`` says about each LLM step that would run: cache, tokens and cost.

Nothing here sends a completion request. Input tokens come from the provider's free
token-counting endpoint where there is one (Anthropic) and a key is set, else from a labelled
heuristic. A step's prompt can be rendered only from outputs that exist before the run starts
(the input, and steps the plan reuses); a step that reads the output of a step that runs first
gets no estimate, and says so, rather than a made-up number.

A fan-out step is estimated from its items when they are known before the run (``input.lines``,
``input.records``, or a reused step's output): tokens per item are averaged over the first
prompts, and the cache is asked about the first thousand items; the rest count as misses.
Items a resume would take from the step's checkpoints (done, with an unchanged fingerprint:
the test ``fanout.ItemIdentity`` makes for the run) cost nothing and are not priced.

Each step is priced in every mode that applies to it, side by side: live, Message Batches
(Anthropic fan-out steps), prompt caching (Anthropic: the first request writes the shared
prefix, the others read it) and both; ``cost_usd`` is the mode the step is set to use.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stepline.context import InputData, Item
from stepline.engine.contract import PreparedRun
from stepline.engine.fanout import ItemIdentity, item_base_fingerprint
from stepline.engine.items import resolve_items
from stepline.engine.plan import Action
from stepline.errors import StepFailed, StepLineError
from stepline.providers.base import LLMRequest, Usage
from stepline.providers.pool import ProviderPool
from stepline.providers.pricing import Pricer
from stepline.providers.requests import (
    REPLAY,
    Target,
    cache_label,
    find_recorded,
    request_hash,
    targets,
)
from stepline.providers.tokens import estimate_tokens
from stepline.settings import Settings
from stepline.spec import LLMParams, LLMStep
from stepline.spec.model_rules import chars_per_token
from stepline.steps.base import item_context, template_context
from stepline.steps.llm import build_request
from stepline.store.cache import ResponseCache
from stepline.store.cassette import Cassette
from stepline.store.items import LOOKUP_BATCH, ItemRecord, ItemStatus, read_checkpoints
from stepline.store.jsonl import hash_output
from stepline.store.runs import RunStore
from stepline.store.state import StepStatus

HEURISTIC = "heuristic (~3-4 characters per token, by model)"
COUNTED = "counted by the provider"
SAMPLED_ITEMS = 20  # a fan-out step's tokens per item: the mean over its first prompts
CHECKED_ITEMS = 1_000  # items whose requests are looked up in the cache (or cassette)
LIVE, BATCH, CACHED, BATCH_CACHED = "live", "batch", "cache_prompt", "batch+cache_prompt"
MODES = (LIVE, BATCH, CACHED, BATCH_CACHED)
"""The ways a step's requests can be sent and billed, as ``--dry-run`` prices them."""


@dataclass(frozen=True)
class LLMEstimate:
    """One LLM step's outlook. A cost prices the input and a full reply (``max_tokens``), so it
    is an upper bound; None when the input or the price is unknown. ``costs`` has one per mode
    that applies to the step (see ``MODES``); ``cost_usd`` is the one of ``mode``, the mode the
    step is set to use."""

    step: str
    model: str
    cache: str  # "hit", "miss (no entry | expired | key changed)", "off", "replay (...)", "?"
    input_tokens: int | None  # a fan-out step's: all items together
    max_output_tokens: int
    cost_usd: float | None
    method: str | None = None  # HEURISTIC or COUNTED
    note: str | None = None
    items: int | None = None  # a fan-out step's number of items, when known
    items_done: int = 0  # of those, taken from the checkpoints: not sent, not priced
    mode: str = LIVE
    costs: dict[str, float | None] = field(default_factory=dict)

    @property
    def approximate(self) -> bool:
        """True unless the provider counted the tokens."""
        return self.method != COUNTED


@dataclass(frozen=True)
class _Planned:
    step: LLMStep
    params: LLMParams
    target: Target
    request: LLMRequest | None  # a fan-out step's: its first item's
    note: str | None
    items: int | None = None
    item_requests: tuple[LLMRequest, ...] = ()  # the first CHECKED_ITEMS items' to send
    prefix_chars: int = 0  # with cache_prompt: the characters every request shares
    items_done: int = 0  # items the checkpoints answer (done, or failed and kept)


@dataclass(frozen=True)
class _KnownItems:
    """What a dry run reads a fan-out step's items from (see ``items.ItemSource``)."""

    input: InputData
    context: dict[str, Any]

    def template_context(self) -> dict[str, Any]:
        return self.context


def estimate_llm_steps(
    prepared: PreparedRun, settings: Settings, *, replay: Path | None = None
) -> list[LLMEstimate]:
    """An estimate for every LLM step the plan runs, in order."""
    planned = _plan_requests(prepared)
    counts = {} if replay is not None else _provider_counts(planned, settings)
    pricer = Pricer(prepared.spec.pricing)
    cache = RunStore(settings.workdir).cache()
    try:
        return [
            _estimate(prepared, each, counts.get(each.step.id), pricer, cache, replay)
            for each in planned
        ]
    finally:
        cache.close()


@dataclass(frozen=True)
class BudgetOutlook:
    """The run's budget (``--max-cost`` or ``budget:``) beside the dry run's estimate."""

    limit_usd: float
    spent_usd: float | None  # a resumed run's spend so far (llm-calls.jsonl); None: a new run
    planned_usd: float  # the LLM steps' cost bounds in the modes they are set to use
    unknown: int  # LLM steps whose cost is unknown: not estimable before the run, or unpriced

    @property
    def left_usd(self) -> float:
        return max(0.0, self.limit_usd - (self.spent_usd or 0.0))

    @property
    def fits(self) -> bool:
        """Whether the estimate (an upper bound) fits what is left, unknown steps aside."""
        return self.planned_usd <= self.left_usd

    @property
    def summary(self) -> str:
        """``Budget $5.0000, $1.2000 spent so far, $3.8000 left: the estimate fits.``"""
        text = f"Budget ${self.limit_usd:.4f}"
        if self.spent_usd is not None:
            text += f", ${self.spent_usd:.4f} spent so far, ${self.left_usd:.4f} left"
        if not self.fits:
            return (
                f"{text}: the estimate passes it by ${self.planned_usd - self.left_usd:.4f}; "
                "the run may pause at the budget (exit 3) unless replies stay well under "
                "max_tokens."
            )
        if self.unknown:
            steps = "steps" if self.unknown > 1 else "step"
            return f"{text}: the estimate fits ({self.unknown} {steps} of unknown cost aside)."
        return f"{text}: the estimate fits."


def budget_outlook(prepared: PreparedRun, estimates: list[LLMEstimate]) -> BudgetOutlook | None:
    """The budget, what a resumed run has spent (summed as the budget sums it) and whether the
    estimate fits; None when the run has no budget."""
    if prepared.budget_usd is None:
        return None
    spent = prepared.run_dir.calls_cost_usd() if prepared.run_dir.exists() else None
    planned, unknown = planned_cost(estimates)
    return BudgetOutlook(prepared.budget_usd, spent, planned, unknown)


def planned_cost(estimates: list[LLMEstimate], mode: str | None = None) -> tuple[float, int]:
    """The steps' cost bound in the modes they are set to use, or all in ``mode`` (steps it
    does not apply to counted live), and how many steps' costs are unknown."""
    total, unknown = 0.0, 0
    for estimate in estimates:
        if mode is None:
            cost = estimate.cost_usd
        else:
            cost = estimate.costs.get(mode, estimate.costs.get(LIVE))
        if cost is None:
            unknown += 1
        else:
            total += cost
    return total, unknown


def _plan_requests(prepared: PreparedRun) -> list[_Planned]:
    """The request each LLM step that runs would send, where it can be rendered now."""
    outputs = _known_outputs(prepared)
    context = template_context(
        prepared.input,
        outputs,
        prepared.state.run_id,
        prepared.run_dir.path.resolve(),
        prepared.variables,
    )
    planned = []
    for step, decision in zip(prepared.spec.steps, prepared.decisions, strict=True):
        if decision.action is not Action.RUN or not isinstance(step, LLMStep):
            continue
        params = prepared.spec.llm_params(step)
        target = targets(params)[0]
        needs = prepared.needs[step.id]
        earlier = prepared.spec.step_ids[: prepared.spec.step_ids.index(step.id)]
        wanted = earlier if needs.reads_everything else sorted(needs.steps)
        missing = [name for name in wanted if name not in outputs]
        if missing:
            what = "items or the prompt need" if step.fans_out else "prompt needs"
            note = f'the {what} the output of step "{missing[0]}", which runs first'
            planned.append(_Planned(step, params, target, None, note))
        elif step.fans_out:
            planned.append(_plan_items(prepared, step, params, target, context))
        else:
            try:
                request = replace(build_request(step, params, context), model=target.model)
                prefix = _prefix_chars(step, params, context)
            except StepLineError as exc:
                planned.append(_Planned(step, params, target, None, _unrendered(exc)))
            else:
                planned.append(_Planned(step, params, target, request, None, prefix_chars=prefix))
    return planned


def _plan_items(
    prepared: PreparedRun,
    step: LLMStep,
    params: LLMParams,
    target: Target,
    context: dict[str, Any],
) -> _Planned:
    """A fan-out step's item count and the requests of its first items to send (items read
    as the run would read them, so duplicate keys or a bad for_each show up here too; items
    the checkpoints answer are left out)."""
    try:
        resolved = resolve_items(step, _KnownItems(prepared.input, context))
        count, items = resolved.count, resolved.items
        done = _Reused(prepared, step, context)
        left = done.left(items)
        first_items = list(itertools.islice(left, CHECKED_ITEMS))
        if done.active:  # count the answered items among the rest too
            for _ in left:
                pass
    except StepLineError as exc:
        reason = exc.reason if isinstance(exc, StepFailed) else exc.message
        return _Planned(step, params, target, None, f"the items cannot be read: {reason}")
    if not count:
        return _Planned(step, params, target, None, "no items: nothing to send", items=0)
    if not first_items:
        note = f"all {count:,} items are done in the checkpoints: nothing to send"
        return _Planned(step, params, target, None, note, items=count, items_done=done.count)
    try:
        requests = tuple(
            replace(
                build_request(step, params, {**context, **item_context(item)}),
                model=target.model,
            )
            for item in first_items
        )
        prefix = _prefix_chars(step, params, {**context, **item_context(first_items[0])})
    except StepLineError as exc:
        return _Planned(step, params, target, None, _unrendered(exc))
    return _Planned(step, params, target, requests[0], None, count, requests, prefix, done.count)


class _Reused:
    """Which of a fan-out step's items the run would take from its checkpoints instead of
    sending: done with an unchanged fingerprint (``fanout.ItemIdentity``), or failed and
    kept by ``--skip-failed``; none with ``--fresh-items`` or without a checkpoint file."""

    def __init__(self, prepared: PreparedRun, step: LLMStep, context: dict[str, Any]) -> None:
        self.path = prepared.run_dir.items_path
        self.step = step
        self.skip_failed = prepared.skip_failed
        self.count = 0
        self.identity: ItemIdentity | None = None
        if not prepared.fresh_items and self.path.exists():
            self.identity = _identity(prepared, step, context)

    @property
    def active(self) -> bool:
        return self.identity is not None

    def left(self, items: Iterator[Item]) -> Iterator[Item]:
        """The items that need a request, in order, counting the others; checkpoints are
        looked up ``LOOKUP_BATCH`` at a time, as the run looks them up."""
        if self.identity is None:
            yield from items
            return
        while batch := list(itertools.islice(items, LOOKUP_BATCH)):
            found = read_checkpoints(self.path, self.step.id, [each.key for each in batch])
            for item in batch:
                if self._answered(self.identity, item, found.get(item.key)):
                    self.count += 1
                else:
                    yield item

    def _answered(self, identity: ItemIdentity, item: Item, record: ItemRecord | None) -> bool:
        if record is None or not identity.holds(item, identity.of(item), record):
            return False
        return record.status is ItemStatus.DONE or (
            record.status is ItemStatus.FAILED and self.skip_failed
        )


def _identity(prepared: PreparedRun, step: LLMStep, context: dict[str, Any]) -> ItemIdentity:
    """The step's items' identity as the run would make it, from the outputs the plan
    reuses before it (a step that reads one that runs first gets no estimate at all)."""
    needs = prepared.needs[step.id]
    earlier = set(prepared.spec.step_ids[: prepared.spec.step_ids.index(step.id)])
    read = earlier if needs.reads_everything else needs.steps | needs.item_source
    hashes = {
        name: hash_output(value)
        for name, value in context["steps"].items()
        if name in earlier and name in read
    }
    base = item_base_fingerprint(
        prepared.spec,
        step,
        needs,
        prepared.variables,
        output_hashes=hashes,
        input_hash=prepared.input.hash,
    )
    lists = {name: hashes[name] for name in sorted(needs.item_source) if name in hashes}
    return ItemIdentity(base, needs.uses_item_index, lists)


def _prefix_chars(step: LLMStep, params: LLMParams, context: dict[str, Any]) -> int:
    """The characters prompt caching would cache: the system prompt and the start of the prompt
    every item shares (as the run marks it with ``cache_prompt``, set here or not)."""
    request = build_request(step, params.model_copy(update={"cache_prompt": True}), context)
    return len(request.system or "") + (request.cached_chars or 0)


def _unrendered(exc: StepLineError) -> str:
    return f"the prompt does not render: {exc.message}"


def _known_outputs(prepared: PreparedRun) -> dict[str, Any]:
    """Outputs on disk for the steps the plan reuses (what the run will start from)."""
    outputs = {}
    for decision, record in zip(prepared.decisions, prepared.state.steps, strict=True):
        reused = decision.action is Action.REUSE and record.status == StepStatus.COMPLETED
        if reused and record.output:
            outputs[record.id] = prepared.run_dir.read_output(record.output)
    return outputs


def _provider_counts(planned: list[_Planned], settings: Settings) -> dict[str, int]:
    """Token counts from the providers that offer them; empty when none can be asked."""
    askable = [each for each in planned if each.request is not None]
    if not askable:
        return {}

    async def count_all() -> dict[str, int]:
        pool = ProviderPool(settings)
        try:
            counts = {}
            for each in askable:
                assert each.request is not None
                try:
                    provider = pool.get(each.target.provider, each.target.base_url)
                except StepLineError:  # no key, or a provider that cannot count: estimate
                    continue
                counted = await provider.count_tokens(each.request)
                if counted is not None:
                    counts[each.step.id] = counted
            return counts
        finally:
            await pool.aclose()

    return asyncio.run(count_all())


def _estimate(
    prepared: PreparedRun,
    planned: _Planned,
    counted: int | None,
    pricer: Pricer,
    cache: ResponseCache,
    replay: Path | None,
) -> LLMEstimate:
    step, params, request = planned.step, planned.params, planned.request
    modes = _modes(planned, replay)
    mode = _configured_mode(params, modes)
    if request is None and planned.items and planned.items_done == planned.items:
        return LLMEstimate(  # every item is done in the checkpoints: nothing to pay for
            step.id,
            params.model,
            "-",
            0,
            0,
            0.0,
            note=planned.note,
            items=planned.items,
            items_done=planned.items_done,
            mode=mode,
            costs=dict.fromkeys(modes, 0.0),
        )
    if request is None:
        return LLMEstimate(
            step.id,
            params.model,
            "?",
            None,
            params.max_tokens,
            None,
            note=planned.note,
            items=planned.items,
            mode=mode,
            costs=dict.fromkeys(modes),
        )
    if planned.items is not None:
        return _estimate_items(prepared, planned, counted, pricer, cache, replay)
    heuristic = estimate_tokens(request)
    tokens = counted if counted is not None else heuristic
    status = _cache_status(prepared, planned, request, cache, replay)
    sent = 0 if _answered(status) else 1
    costs, cache_note = _price_modes(
        pricer, planned, modes, sent=sent, per_request=tokens, scale=tokens / max(heuristic, 1)
    )
    method = COUNTED if counted is not None else HEURISTIC
    notes = [note for note in (_window_note(pricer, params, tokens), cache_note) if note]
    return LLMEstimate(
        step.id,
        params.model,
        status,
        tokens,
        params.max_tokens,
        costs[mode],
        method,
        "; ".join(notes) or None,
        mode=mode,
        costs=costs,
    )


def _estimate_items(
    prepared: PreparedRun,
    planned: _Planned,
    counted: int | None,
    pricer: Pricer,
    cache: ResponseCache,
    replay: Path | None,
) -> LLMEstimate:
    """A fan-out step: tokens per item times the items to send; only the items not answered
    by the checkpoints or the cache (or cassette) are priced, and items past the checked
    ones count as misses."""
    params, requests = planned.params, planned.item_requests
    count = planned.items or 0
    sending = count - planned.items_done
    sampled = [estimate_tokens(request) for request in requests[:SAMPLED_ITEMS]]
    per_item = sum(sampled) / len(sampled)
    scale = 1.0
    if counted is not None:  # the provider counted the first prompt: scale the heuristic
        scale = counted / max(sampled[0], 1)
        per_item *= scale
    statuses = [_cache_status(prepared, planned, request, cache, replay) for request in requests]
    answered = sum(_answered(status) for status in statuses)
    modes = _modes(planned, replay)
    mode = _configured_mode(params, modes)
    costs, cache_note = _price_modes(
        pricer,
        planned,
        modes,
        sent=sending - answered,
        per_request=per_item,
        scale=scale,
        largest=max(sampled) * scale,
    )
    notes = [f"{count:,} items, ~{round(per_item):,} input tokens each"]
    if planned.items_done:
        notes[0] = (
            f"{count:,} items, {planned.items_done:,} done in the checkpoints, "
            f"{sending:,} to send, ~{round(per_item):,} input tokens each"
        )
    notes += [note for note in (_window_note(pricer, params, round(per_item)), cache_note) if note]
    return LLMEstimate(
        planned.step.id,
        params.model,
        _items_status(statuses, answered, checked=len(requests), count=sending),
        round(per_item * sending),
        params.max_tokens * sending,
        costs[mode],
        COUNTED if counted is not None else HEURISTIC,
        "; ".join(notes),
        items=count,
        items_done=planned.items_done,
        mode=mode,
        costs=costs,
    )


def _items_status(statuses: list[str], answered: int, *, checked: int, count: int) -> str:
    """A fan-out step's cache column: how many of the checked items are answered."""
    of = f"{checked:,}" if checked == count else f"first {checked:,}"
    if statuses[0] in ("off", "skipped (--no-cache)"):
        return statuses[0]
    if statuses[0].startswith("replay"):
        return f"replay ({answered:,} of {of} recorded)"
    return f"{answered:,} of {of} cached"


def _modes(planned: _Planned, replay: Path | None) -> tuple[str, ...]:
    """The modes a step can use: Message Batches for Anthropic fan-out steps, prompt caching
    for Anthropic steps; a cassette answers live (and for free)."""
    if replay is not None or planned.target.provider != "anthropic":
        return (LIVE,)
    return MODES if planned.step.fans_out else (LIVE, CACHED)


def _configured_mode(params: LLMParams, modes: tuple[str, ...]) -> str:
    """The mode the step is set to use (``mode:``, ``cache_prompt:``), where it applies."""
    batch, cached = params.mode == "batch", params.cache_prompt
    mode = BATCH_CACHED if batch and cached else BATCH if batch else CACHED if cached else LIVE
    return mode if mode in modes else LIVE


def _price_modes(
    pricer: Pricer,
    planned: _Planned,
    modes: tuple[str, ...],
    *,
    sent: int,
    per_request: float,
    scale: float,
    largest: float | None = None,
) -> tuple[dict[str, float | None], str | None]:
    """Each mode's cost bound for ``sent`` requests of ``per_request`` input tokens (None where
    the model has no price), and a note when the prefix is too short for the prompt cache.
    ``scale`` turns heuristic tokens into the provider's count where it counted. A tiered
    price is taken at the tier of the ``largest`` request (by default ``per_request``): the
    tier is chosen per request, so pricing every item at the dearest tier any item reaches
    keeps the bound a bound."""
    model, max_tokens = planned.params.model, planned.params.max_tokens
    tier_tokens = per_request if largest is None else max(largest, per_request)
    shared, note = 0.0, None
    if CACHED in modes:
        shared, note = _cached_tokens(pricer, planned, per_request, scale)
    costs: dict[str, float | None] = {}
    for mode in modes:
        rates = _Rates.of(
            pricer, model, batch=mode in (BATCH, BATCH_CACHED), prompt_tokens=tier_tokens
        )
        cached = shared if mode in (CACHED, BATCH_CACHED) else 0.0
        if mode == BATCH_CACHED and cached and sent:
            costs[mode] = _batch_with_warm_up(
                pricer, model, sent, per_request, cached, max_tokens, tier_tokens
            )
        else:
            costs[mode] = (
                None if rates is None else rates.cost(sent, per_request, cached, max_tokens)
            )
    return costs, note


def _batch_with_warm_up(
    pricer: Pricer,
    model: str,
    sent: int,
    per_request: float,
    cached: float,
    max_tokens: int,
    tier_tokens: float,
) -> float | None:
    """Batch mode with cache_prompt: the first request goes live and writes the one-hour
    cache; the batch's requests read it at batch prices."""
    live = _Rates.of(pricer, model, batch=False, one_hour=True, prompt_tokens=tier_tokens)
    batch = _Rates.of(pricer, model, batch=True, prompt_tokens=tier_tokens)
    if live is None or batch is None:
        return None
    first = live.cost(1, per_request, cached, max_tokens)
    reading = (per_request - cached) * batch.input + max_tokens * batch.output
    return round(first + (sent - 1) * (reading + cached * batch.cache_read), 8)


def _cached_tokens(
    pricer: Pricer, planned: _Planned, per_request: float, scale: float
) -> tuple[float, str | None]:
    """The tokens of each request that prompt caching would cache: 0 when the shared prefix is
    shorter than the model caches, with a note where the step sets cache_prompt or fans out."""
    model = planned.params.model
    tokens = min(planned.prefix_chars / chars_per_token(model) * scale, per_request)
    minimum = pricer.cache_min_tokens(model)
    if tokens >= minimum:
        return tokens, None
    if not (planned.params.cache_prompt or planned.step.fans_out):
        return 0.0, None
    return 0.0, (
        f"cache_prompt saves nothing: the shared prefix is ~{round(tokens):,} tokens, below "
        f"the {minimum:,} that {model} caches"
    )


@dataclass(frozen=True)
class _Rates:
    """USD per token of each kind, at live or at Message Batches prices."""

    input: float
    output: float
    cache_write: float
    cache_read: float

    @classmethod
    def of(
        cls,
        pricer: Pricer,
        model: str,
        *,
        batch: bool,
        prompt_tokens: float,
        one_hour: bool = False,
    ) -> _Rates | None:
        """The rates for requests of ``prompt_tokens`` (a tiered price depends on it);
        ``one_hour``: cache writes last an hour (the dearer write)."""
        million = 1_000_000
        usages = [
            Usage(input_tokens=million),
            Usage(output_tokens=million),
            Usage(cache_write_tokens=million, cache_write_1h_tokens=million if one_hour else 0),
            Usage(cache_read_tokens=million),
        ]
        rates = [
            pricer.cost_usd(model, usage, batch=batch, prompt_tokens=prompt_tokens)
            for usage in usages
        ]
        known = [rate for rate in rates if rate is not None]
        if len(known) < len(usages):
            return None
        return cls(*(rate / million for rate in known))

    def cost(self, requests: int, per_request: float, cached: float, max_tokens: int) -> float:
        """``requests`` requests of ``per_request`` input tokens and a full reply each; the first
        writes ``cached`` of those tokens to the prompt cache and the others read them."""
        if requests <= 0:
            return 0.0
        plain = (per_request - cached) * self.input + max_tokens * self.output
        cost = requests * plain + cached * (self.cache_write + (requests - 1) * self.cache_read)
        return round(cost, 8)


def _answered(status: str) -> bool:
    """Whether a request with this cache status is answered without being sent."""
    return status in ("hit", "replay (recorded)")


def _window_note(pricer: Pricer, params: LLMParams, tokens: int) -> str | None:
    window = pricer.context_window(params.model)
    if window is not None and tokens + params.max_tokens > window:
        return f"~{tokens:,} input tokens plus max_tokens may not fit the {window:,}-token window"
    return None


def _cache_status(
    prepared: PreparedRun,
    planned: _Planned,
    request: LLMRequest,
    cache: ResponseCache,
    replay: Path | None,
) -> str:
    params, target = planned.params, planned.target
    if replay is not None or target.provider == REPLAY:
        path = replay or prepared.spec.base_dir / (params.cassette or "")
        try:
            recorded = find_recorded(Cassette(path), target, request) is not None
        except StepLineError:
            recorded = False
        return "replay (recorded)" if recorded else "replay (not recorded)"
    if not params.cache.enabled:
        return "off"
    if prepared.refresh_cache:
        return "skipped (--no-cache)"
    label = cache_label(prepared.spec.name, planned.step.id)
    found = cache.lookup(request_hash(target, request), ttl_s=params.cache.ttl, label=label)
    return "hit" if found.reason == "hit" else f"miss ({found.reason})"
