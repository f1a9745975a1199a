"""``kind: llm``: render the prompt, ask the provider, return the reply (text or JSON).

A JSON reply that does not parse, or does not match the step's schema, is not the end: the
model is shown what was wrong and asked again, up to ``repair_attempts`` times, the way a person
would correct a colleague. Every reply, rejected ones included, stays in the call records. A
successful repair chain stays cached, so a re-run replays it for free; a failed one is dropped
from the cache, so a retry asks afresh.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from stepline.errors import ProviderError, StepFailed
from stepline.providers.base import MAX_REPLY_BYTES, Completion, LLMRequest, Turn
from stepline.spec import LLMParams, LLMStep
from stepline.steps.base import StepEnvironment, StepOutcome
from stepline.steps.structured import ReplyProblem, repair_request_text, structured_value
from stepline.templates import item_free_prefix, render


async def run_llm_step(step: LLMStep, env: StepEnvironment) -> StepOutcome:
    params = env.spec.llm_params(step)
    request = build_request(step, params, env.template_context())
    return await finish_llm_step(step, env, params, request)


async def finish_llm_step(
    step: LLMStep,
    env: StepEnvironment,
    params: LLMParams,
    request: LLMRequest,
    first: Completion | None = None,
) -> StepOutcome:
    """Ask (unless ``first`` is a reply already received, from a batch), repair if needed,
    and turn the usable reply into the step's output."""
    replies: list[Completion] = []
    try:
        value = await _ask_until_usable(step, env, request, params, replies, first)
    except Exception:  # a failed chain is not worth replaying (an interrupted one is kept)
        for completion in replies:
            env.llm.discard(completion)
        raise
    metrics = _metrics(replies)
    last = replies[-1]
    if last.stop_reason == "max_tokens":
        metrics["warning"] = f"the reply was cut off at max_tokens ({params.max_tokens})"
        env.log.warning("%s; raise max_tokens if the output is incomplete", metrics["warning"])
    elif not last.text.strip():  # kept (a prompt may allow it), but rarely what was meant
        metrics["warning"] = "the model's reply is empty"
        env.log.warning("%s; the step's output is empty text", metrics["warning"])
    return StepOutcome(value=value, metrics=metrics)


async def _ask_until_usable(
    step: LLMStep,
    env: StepEnvironment,
    request: LLMRequest,
    params: LLMParams,
    replies: list[Completion],
    first: Completion | None = None,
) -> Any:
    """Ask, and ask for repairs, until a reply is usable; ``replies`` collects each one."""
    while True:
        if first is not None and not replies:
            completion = first
        else:
            completion = await _ask(step, env, request, params)
        replies.append(completion)
        _check_size(step, completion)
        try:
            return _output_value(step, completion)
        except ReplyProblem as problem:
            if len(replies) > params.repair_attempts:
                raise _unusable(step, problem, replies) from None
            env.log.warning("%s; asking the model to repair it", problem.message)
            request = _with_repair_turn(request, completion, problem)


def build_request(step: LLMStep, params: LLMParams, context: dict[str, Any]) -> LLMRequest:
    """The step's request, with its prompt and system prompt rendered."""
    prompt = render(step.prompt or "", context, where="prompt")
    cached_chars = None
    if params.cache_prompt and step.cached_prefix is not None:
        prefix = render(step.cached_prefix, context, where="cached_prefix")
        prompt, cached_chars = prefix + prompt, len(prefix)
    elif params.cache_prompt:
        cached_chars = _static_length(step.prompt or "", prompt, context)
    return LLMRequest(
        model=params.model,
        prompt=prompt,
        cached_chars=cached_chars,
        # a batch may start processing long after its first item wrote the cache
        cache_ttl="1h" if cached_chars is not None and params.mode == "batch" else None,
        system=render(step.system, context, where="system") if step.system is not None else None,
        max_tokens=params.max_tokens,
        temperature=params.temperature,
        effort=params.effort,
        stop=tuple(params.stop or ()),
        extra=params.extra,
        schema=step.output_schema,
        prompt_version=params.prompt_version,
    )


def _static_length(source: str, prompt: str, context: dict[str, Any]) -> int:
    """How many leading characters of the rendered ``prompt`` every item shares: the
    rendering of the template's part before its first item variable."""
    static_source = item_free_prefix(source)
    if static_source == source:
        return len(prompt)
    prefix = render(static_source, context, where="prompt")
    for candidate in (prefix, prefix.rstrip()):  # {{- item }} eats the whitespace before it
        if candidate and prompt.startswith(candidate):
            return len(candidate)
    return 0


async def _ask(
    step: LLMStep, env: StepEnvironment, request: LLMRequest, params: LLMParams
) -> Completion:
    try:
        return await env.llm.complete(
            step_id=step.id, request=request, params=params, log=env.log, item_key=env.item_key
        )
    except ProviderError as exc:
        raise StepFailed(step.id, exc.message, hint=exc.hint) from exc


def _check_size(step: LLMStep, completion: Completion) -> None:
    """Refuse a reply over the providers' cap, wherever it came from (a cassette or the cache
    written by an older version too): no repair, and the chain is dropped from the cache."""
    if len(completion.text) * 4 <= MAX_REPLY_BYTES:  # at most 4 bytes a character: no need
        return
    size = len(completion.text.encode("utf-8", "surrogatepass"))
    if size > MAX_REPLY_BYTES:
        raise StepFailed(
            step.id,
            f"the reply is {size / (1024 * 1024):,.1f} MiB, over stepline's cap of "
            f"{MAX_REPLY_BYTES // (1024 * 1024)} MiB for one reply",
            hint="lower max_tokens or ask for a shorter reply",
        )


def _output_value(step: LLMStep, completion: Completion) -> Any:
    """The step's output; ``ReplyProblem`` for JSON a repair may fix, StepFailed otherwise."""
    if completion.stop_reason == "refusal":
        raise StepFailed(
            step.id,
            f"the model refused: {completion.text.strip() or '(no explanation given)'}",
            hint="rephrase the prompt, or use another model",
            artifact=completion.text,
        )
    if completion.stop_reason == "max_tokens" and not completion.text.strip():
        raise StepFailed(
            step.id,
            "the reply was cut off at max_tokens while the model was still thinking: "
            "no answer came back",
            hint="raise max_tokens for this step (or in llm:): the model's thinking counts "
            "against it; or lower effort:. Then resume",
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
    return structured_value(completion.text, step.output_schema)


def _with_repair_turn(
    request: LLMRequest, completion: Completion, problem: ReplyProblem
) -> LLMRequest:
    turns = (
        Turn("assistant", completion.text),
        Turn("user", repair_request_text(problem, request.schema)),
    )
    return replace(request, followups=request.followups + turns)


def _unusable(step: LLMStep, problem: ReplyProblem, replies: list[Completion]) -> StepFailed:
    repairs = len(replies) - 1
    after = f" (after {repairs} repair attempt{'s' if repairs != 1 else ''})" if repairs else ""
    hint = (
        "make the prompt say exactly which JSON to return, raise repair_attempts, "
        "or try a stronger model; every reply is in pipeline show RUN --calls"
    )
    return StepFailed(step.id, problem.message + after, hint=hint, artifact=_all_texts(replies))


def _all_texts(replies: list[Completion]) -> str:
    """The rejected replies, for the ``.failed.txt`` file a person reads."""
    if len(replies) == 1:
        return replies[0].text
    return "\n\n".join(
        f"----- reply {number} of {len(replies)} -----\n{reply.text}"
        for number, reply in enumerate(replies, start=1)
    )


def _metrics(replies: list[Completion]) -> dict[str, Any]:
    """The step's usage: the answering call's facts, tokens and cost summed over repairs."""
    last = replies[-1]
    costs = [reply.cost_usd for reply in replies]
    metrics: dict[str, Any] = {
        "model": last.model,
        "model_requested": last.model_requested,
        "attempts": sum(reply.attempts for reply in replies),
        "stop_reason": last.stop_reason,
        "input_tokens": sum(reply.usage.input_tokens for reply in replies),
        "output_tokens": sum(reply.usage.output_tokens for reply in replies),
        "cache_write_tokens": sum(reply.usage.cache_write_tokens for reply in replies),
        "cache_read_tokens": sum(reply.usage.cache_read_tokens for reply in replies),
        "cost_usd": None if None in costs else sum(cost or 0.0 for cost in costs),
    }
    if len(replies) > 1:
        metrics["repairs"] = len(replies) - 1
    return metrics
