"""What ``--dry-run`` says about each LLM step that would run: cache, tokens and cost.

Nothing here sends a completion request. Input tokens come from the provider's free
token-counting endpoint where there is one (Anthropic) and a key is set, else from a labelled
heuristic. A step's prompt can be rendered only from outputs that exist before the run starts
(the input, and steps the plan reuses); a step that reads the output of a step that runs first
gets no estimate, and says so, rather than a made-up number.

A fan-out step is estimated from its items when they are known before the run (``input.lines``,
``input.records``, or a reused step's output): tokens per item are averaged over the first
prompts, and the cache is asked about the first thousand items; the rest count as misses.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from stepline.engine.fanout import resolve_items
from stepline.engine.plan import Action
from stepline.engine.runner import PreparedRun
from stepline.errors import StepFailed, StepLineError
from stepline.providers.base import LLMRequest
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
from stepline.steps.base import InputData, item_context, template_context
from stepline.steps.llm import build_request
from stepline.store.cache import ResponseCache
from stepline.store.cassette import Cassette
from stepline.store.runs import RunStore
from stepline.store.state import StepStatus

HEURISTIC = "heuristic (~4 characters per token)"
COUNTED = "counted by the provider"
SAMPLED_ITEMS = 20  # a fan-out step's tokens per item: the mean over its first prompts
CHECKED_ITEMS = 1_000  # items whose requests are looked up in the cache (or cassette)


@dataclass(frozen=True)
class LLMEstimate:
    """One LLM step's outlook. ``cost_usd`` prices the input and a full reply (``max_tokens``),
    so it is an upper bound; None when the input or the price is unknown."""

    step: str
    model: str
    cache: str  # "hit", "miss (no entry | expired | key changed)", "off", "replay (...)", "?"
    input_tokens: int | None  # a fan-out step's: all items together
    max_output_tokens: int
    cost_usd: float | None
    method: str | None = None  # HEURISTIC or COUNTED
    note: str | None = None
    items: int | None = None  # a fan-out step's number of items, when known

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
    item_requests: tuple[LLMRequest, ...] = ()  # the first CHECKED_ITEMS items'


@dataclass(frozen=True)
class _KnownItems:
    """What a dry run reads a fan-out step's items from (see ``fanout.ItemSource``)."""

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
            except StepLineError as exc:
                planned.append(_Planned(step, params, target, None, _unrendered(exc)))
            else:
                planned.append(_Planned(step, params, target, request, None))
    return planned


def _plan_items(
    prepared: PreparedRun,
    step: LLMStep,
    params: LLMParams,
    target: Target,
    context: dict[str, Any],
) -> _Planned:
    """A fan-out step's item count and its first items' requests (items read as the run
    would read them, so duplicate keys or a bad for_each show up here too)."""
    try:
        count, items = resolve_items(step, _KnownItems(prepared.input, context))
        first_items = list(itertools.islice(items, CHECKED_ITEMS))
    except StepLineError as exc:
        reason = exc.reason if isinstance(exc, StepFailed) else exc.message
        return _Planned(step, params, target, None, f"the items cannot be read: {reason}")
    try:
        requests = tuple(
            replace(
                build_request(step, params, {**context, **item_context(item)}),
                model=target.model,
            )
            for item in first_items
        )
    except StepLineError as exc:
        return _Planned(step, params, target, None, _unrendered(exc))
    if not requests:
        return _Planned(step, params, target, None, "no items: nothing to send", items=0)
    return _Planned(step, params, target, requests[0], None, count, requests)


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
        )
    if planned.items is not None:
        return _estimate_items(prepared, planned, counted, pricer, cache, replay)
    tokens = counted if counted is not None else estimate_tokens(request)
    status = _cache_status(prepared, planned, request, cache, replay)
    cost: float | None = None
    price = pricer.price(params.model)
    if _answered(status):
        cost = 0.0
    elif price is not None:
        cost = (tokens * price.input + params.max_tokens * price.output) / 1_000_000
    method = COUNTED if counted is not None else HEURISTIC
    note = _window_note(pricer, params, tokens)
    return LLMEstimate(step.id, params.model, status, tokens, params.max_tokens, cost, method, note)


def _estimate_items(
    prepared: PreparedRun,
    planned: _Planned,
    counted: int | None,
    pricer: Pricer,
    cache: ResponseCache,
    replay: Path | None,
) -> LLMEstimate:
    """A fan-out step: tokens per item times the items; only the items not answered by the
    cache (or cassette) are priced, and items past the checked ones count as misses."""
    params, requests = planned.params, planned.item_requests
    count = planned.items or 0
    sampled = [estimate_tokens(request) for request in requests[:SAMPLED_ITEMS]]
    per_item = sum(sampled) / len(sampled)
    if counted is not None:  # the provider counted the first prompt: scale the heuristic
        per_item *= counted / max(sampled[0], 1)
    statuses = [_cache_status(prepared, planned, request, cache, replay) for request in requests]
    answered = sum(_answered(status) for status in statuses)
    cost: float | None = None
    price = pricer.price(params.model)
    if price is not None:
        each = (per_item * price.input + params.max_tokens * price.output) / 1_000_000
        cost = (count - answered) * each
    checked = f"{len(requests):,}" if len(requests) == count else f"first {len(requests):,}"
    if statuses[0] in ("off", "skipped (--no-cache)"):
        status = statuses[0]
    elif statuses[0].startswith("replay"):
        status = f"replay ({answered:,} of {checked} recorded)"
    else:
        status = f"{answered:,} of {checked} cached"
    notes = [f"{count:,} items, ~{round(per_item):,} input tokens each"]
    if window_note := _window_note(pricer, params, round(per_item)):
        notes.append(window_note)
    return LLMEstimate(
        planned.step.id,
        params.model,
        status,
        round(per_item * count),
        params.max_tokens * count,
        cost,
        COUNTED if counted is not None else HEURISTIC,
        "; ".join(notes),
        items=count,
    )


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
