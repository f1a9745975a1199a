"""What ``--dry-run`` says about each LLM step that would run: cache, tokens and cost.

Nothing here sends a request. A step's prompt can be rendered only from outputs that exist
before the run starts (the input, and steps the plan reuses); a step that reads the output of
a step that runs first gets no token estimate, and says so, rather than a made-up number.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from stepline.engine.plan import Action
from stepline.engine.runner import PreparedRun
from stepline.errors import StepLineError
from stepline.providers.base import LLMRequest
from stepline.providers.pricing import Pricer
from stepline.providers.requests import (
    REPLAY,
    cache_label,
    find_recorded,
    request_hash,
    targets,
)
from stepline.providers.tokens import estimate_tokens
from stepline.spec import LLMParams, LLMStep
from stepline.steps.base import template_context
from stepline.steps.llm import build_request
from stepline.store.cache import ResponseCache
from stepline.store.cassette import Cassette
from stepline.store.runs import RunStore
from stepline.store.state import StepStatus


@dataclass(frozen=True)
class LLMEstimate:
    """One LLM step's outlook. ``cost_usd`` prices the estimated input and a full reply
    (``max_tokens``), so it is an upper bound; None when the input or the price is unknown."""

    step: str
    model: str
    cache: str  # "hit", "miss (no entry | expired | key changed)", "off", "replay (...)", "?"
    input_tokens: int | None
    max_output_tokens: int
    cost_usd: float | None
    note: str | None = None

    @property
    def method(self) -> str:
        return "heuristic, ~4 characters per token"


def estimate_llm_steps(
    prepared: PreparedRun, workdir: Path, *, replay: Path | None = None
) -> list[LLMEstimate]:
    """An estimate for every LLM step the plan runs, in order."""
    outputs = _known_outputs(prepared)
    context = template_context(
        prepared.input,
        outputs,
        prepared.state.run_id,
        prepared.run_dir.path.resolve(),
        prepared.variables,
    )
    pricer = Pricer(prepared.spec.pricing)
    cache = RunStore(workdir).cache()
    try:
        return [
            _estimate(prepared, step, outputs, context, pricer, cache, replay)
            for step, decision in zip(prepared.spec.steps, prepared.decisions, strict=True)
            if decision.action is Action.RUN and isinstance(step, LLMStep)
        ]
    finally:
        cache.close()


def _known_outputs(prepared: PreparedRun) -> dict[str, Any]:
    """Outputs on disk for the steps the plan reuses (what the run will start from)."""
    outputs = {}
    for decision, record in zip(prepared.decisions, prepared.state.steps, strict=True):
        reused = decision.action is Action.REUSE and record.status == StepStatus.COMPLETED
        if reused and record.output:
            outputs[record.id] = prepared.run_dir.read_output(record.output)
    return outputs


def _estimate(
    prepared: PreparedRun,
    step: LLMStep,
    outputs: dict[str, Any],
    context: dict[str, Any],
    pricer: Pricer,
    cache: ResponseCache,
    replay: Path | None,
) -> LLMEstimate:
    params = prepared.spec.llm_params(step)
    blank = LLMEstimate(step.id, params.model, "?", None, params.max_tokens, None)
    needs = prepared.needs[step.id]
    earlier = prepared.spec.step_ids[: prepared.spec.step_ids.index(step.id)]
    wanted = earlier if needs.reads_everything else sorted(needs.steps)
    missing = [name for name in wanted if name not in outputs]
    if missing:
        return replace(
            blank, note=f'the prompt needs the output of step "{missing[0]}", which runs first'
        )
    try:
        request = build_request(step, params, context)
    except StepLineError as exc:
        return replace(blank, note=f"the prompt does not render: {exc.message}")
    tokens = estimate_tokens(request)
    status = _cache_status(prepared, step, params, request, cache, replay)
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
    return LLMEstimate(step.id, params.model, status, tokens, params.max_tokens, cost, note)


def _cache_status(
    prepared: PreparedRun,
    step: LLMStep,
    params: LLMParams,
    request: LLMRequest,
    cache: ResponseCache,
    replay: Path | None,
) -> str:
    primary = targets(params)[0]
    request = replace(request, model=primary.model)
    if replay is not None or primary.provider == REPLAY:
        path = replay or prepared.spec.base_dir / (params.cassette or "")
        try:
            recorded = find_recorded(Cassette(path), primary, request) is not None
        except StepLineError:
            recorded = False
        return "replay (recorded)" if recorded else "replay (not recorded)"
    if not params.cache.enabled:
        return "off"
    label = cache_label(prepared.spec.name, step.id)
    found = cache.lookup(request_hash(primary, request), ttl_s=params.cache.ttl, label=label)
    return "hit" if found.reason == "hit" else f"miss ({found.reason})"
