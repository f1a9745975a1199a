"""``kind: llm``: render the prompt, ask the provider, return the reply (text or JSON).

JSON replies are parsed leniently about presentation (a Markdown code fence around the JSON is
fine) and strictly about content (anything that is not JSON fails the step, and the reply is
kept for a person to read).
"""

from __future__ import annotations

import json
import re
from typing import Any

from stepline.errors import ProviderError, StepFailed
from stepline.providers.base import Completion, LLMRequest
from stepline.spec import LLMStep
from stepline.steps.base import StepEnvironment, StepOutcome
from stepline.templates import render

_FENCE = re.compile(r"^\s*```[\w-]*\s*\n(.*?)\n\s*```\s*$", re.DOTALL)


async def run_llm_step(step: LLMStep, env: StepEnvironment) -> StepOutcome:
    params = env.spec.llm_params(step)
    context = env.template_context()
    request = LLMRequest(
        model=params.model,
        prompt=render(step.prompt or "", context, where="prompt"),
        system=render(step.system, context, where="system") if step.system is not None else None,
        max_tokens=params.max_tokens,
        temperature=params.temperature,
    )
    try:
        completion = await env.llm.complete(
            step_id=step.id, request=request, params=params, log=env.log
        )
    except ProviderError as exc:
        raise StepFailed(step.id, exc.message, hint=exc.hint) from exc
    try:
        value = _output_value(step, completion)
    except StepFailed:
        env.llm.discard(completion)
        raise
    metrics = _metrics(completion)
    if completion.stop_reason == "max_tokens":
        metrics["warning"] = f"the reply was cut off at max_tokens ({params.max_tokens})"
        env.log.warning("%s; raise max_tokens if the output is incomplete", metrics["warning"])
    return StepOutcome(value=value, metrics=metrics)


def _output_value(step: LLMStep, completion: Completion) -> Any:
    if completion.stop_reason == "refusal":
        raise StepFailed(
            step.id,
            f"the model refused: {completion.text.strip() or '(no explanation given)'}",
            hint="rephrase the prompt, or use another model",
            artifact=completion.text,
        )
    if step.output == "text":
        return completion.text
    if completion.stop_reason == "max_tokens":
        raise StepFailed(
            step.id,
            "the reply was cut off at max_tokens, so it is not complete JSON",
            hint="raise max_tokens for this step (or in llm:) and resume",
            artifact=completion.text,
        )
    try:
        return parse_json_reply(completion.text)
    except json.JSONDecodeError as exc:
        raise StepFailed(
            step.id,
            f"the model's reply is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
            hint="ask for JSON only in the prompt, or use output: text",
            artifact=completion.text,
        ) from None


def parse_json_reply(text: str) -> Any:
    """Parse a reply as JSON, tolerating a surrounding Markdown code fence."""
    match = _FENCE.match(text)
    return json.loads(match.group(1) if match else text)


def _metrics(completion: Completion) -> dict[str, Any]:
    return {
        "model": completion.model,
        "model_requested": completion.model_requested,
        "attempts": completion.attempts,
        "stop_reason": completion.stop_reason,
        "input_tokens": completion.usage.input_tokens,
        "output_tokens": completion.usage.output_tokens,
        "cache_write_tokens": completion.usage.cache_write_tokens,
        "cache_read_tokens": completion.usage.cache_read_tokens,
        "cost_usd": completion.cost_usd,
    }
