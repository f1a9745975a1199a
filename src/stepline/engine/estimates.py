"""What ``--dry-run`` says about each LLM step that would run: cache, tokens and cost.

Nothing here sends a completion request. Input tokens come from the provider's free
token-counting endpoint where there is one (Anthropic) and a key is set, else from a labelled
heuristic. A step's prompt can be rendered only from outputs that exist before the run starts
(the input, and steps the plan reuses); a step that reads the output of a step that runs first
gets no estimate, and says so, rather than a made-up number.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from stepline.engine.plan import Action
from stepline.engine.runner import PreparedRun
from stepline.errors import StepLineError
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
from stepline.steps.base import template_context
from stepline.steps.llm import build_request
from stepline.store.cache import ResponseCache
from stepline.store.cassette import Cassette
from stepline.store.runs import RunStore
from stepline.store.state import StepStatus

HEURISTIC = "heuristic (~4 characters per token)"
COUNTED = "counted by the provider"


@dataclass(frozen=True)
class LLMEstimate:
    """One LLM step's outlook. ``cost_usd`` prices the input and a full reply (``max_tokens``),
    so it is an upper bound; None when the input or the price is unknown."""

    step: str
    model: str
    cache: str  # "hit", "miss (no entry | expired | key changed)", "off", "replay (...)", "?"
    input_tokens: int | None
    max_output_tokens: int
    cost_usd: float | None
    method: str | None = None  # HEURISTIC or COUNTED
    note: str | None = None

    @property
    def approximate(self) -> bool:
        """True unless the provider counted the tokens."""
        return self.method != COUNTED


@dataclass(frozen=True)
class _Planned:
    step: LLMStep
    params: LLMParams
    target: Target
    request: LLMRequest | None
    note: str | None


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
        request, note = None, None
        needs = prepared.needs[step.id]
        earlier = prepared.spec.step_ids[: prepared.spec.step_ids.index(step.id)]
        wanted = earlier if needs.reads_everything else sorted(needs.steps)
        missing = [name for name in wanted if name not in outputs]
        if step.fans_out:
            note = "a fan-out step: one request per item; not estimated yet"
        elif missing:
            note = f'the prompt needs the output of step "{missing[0]}", which runs first'
        else:
            try:
                request = replace(build_request(step, params, context), model=target.model)
            except StepLineError as exc:
                note = f"the prompt does not render: {exc.message}"
        planned.append(_Planned(step, params, target, request, note))
    return planned


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
            step.id, params.model, "?", None, params.max_tokens, None, note=planned.note
        )
    tokens = counted if counted is not None else estimate_tokens(request)
    status = _cache_status(prepared, planned, request, cache, replay)
    cost: float | None = None
    price = pricer.price(params.model)
    if status == "hit" or status.startswith("replay"):
        cost = 0.0
    elif price is not None:
        cost = (tokens * price.input + params.max_tokens * price.output) / 1_000_000
    window = pricer.context_window(params.model)
    note = None
    if window is not None and tokens + params.max_tokens > window:
        note = f"~{tokens:,} input tokens plus max_tokens may not fit the {window:,}-token window"
    method = COUNTED if counted is not None else HEURISTIC
    return LLMEstimate(step.id, params.model, status, tokens, params.max_tokens, cost, method, note)


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
