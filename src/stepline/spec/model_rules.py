"""What each model accepts, checked when a config is loaded instead of paid for in a 400.

The rules (``model-rules.json``, dated) come from the provider's model pages and migration
guides. A model is found by its id, else by the longest family name its id starts with
(``claude-haiku-4-5-20251001`` is ``claude-haiku-4-5``). Anthropic's current API version
refuses sampling parameters for every model, listed or not; the rest applies to listed models
only, so a new model is never refused for what the table does not know.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from stepline.errors import SpecError
from stepline.spec.models import LLMParams, LLMStep, PipelineSpec

EFFORT_LEVELS = ("low", "medium", "high", "xhigh", "max")
"""The values of ``effort:``, the Messages API's ``output_config.effort``."""

DEFAULT_CHARS_PER_TOKEN = 4.0
"""English prose per token where the table is silent (the tokenizers before Claude Opus 4.7)."""


@dataclass(frozen=True)
class ModelRules:
    """One model family's rules."""

    family: str
    max_output: int | None
    effort: tuple[str, ...] | None  # None: the model takes no effort
    effort_default: str | None
    thinking_default: str
    thinking_accepted: tuple[str, ...]
    # thinking type -> the highest effort it is taken at (disabled on Haiku 5.5: high)
    thinking_max_effort: Mapping[str, str]
    prefill: bool
    forced_tool_choice: bool
    chars_per_token: float


@dataclass(frozen=True)
class RuleTable:
    updated: str
    api_version: str
    removed_parameters: tuple[str, ...]
    removed_note: str
    families: Mapping[str, ModelRules]


@dataclass(frozen=True)
class Refusal:
    """A setting the model would refuse: the config key that holds it, and what to do."""

    key: str
    message: str
    hint: str


@functools.cache
def rule_table() -> RuleTable:
    """The shipped table, read once."""
    text = resources.files(__package__).joinpath("model-rules.json").read_text()
    data = json.loads(text)
    api = data["api"]
    return RuleTable(
        updated=data["updated"],
        api_version=api["version"],
        removed_parameters=tuple(api["removed_parameters"]),
        removed_note=api["removed_note"],
        families={name: _rules(name, entry) for name, entry in data["families"].items()},
    )


def _rules(family: str, entry: dict[str, Any]) -> ModelRules:
    effort = entry.get("effort")
    return ModelRules(
        family=family,
        max_output=entry.get("max_output"),
        effort=tuple(effort) if effort is not None else None,
        effort_default=entry.get("effort_default"),
        thinking_default=entry["thinking"]["default"],
        thinking_accepted=tuple(entry["thinking"]["accepted"]),
        thinking_max_effort=dict(entry["thinking"].get("max_effort", {})),
        prefill=bool(entry["prefill"]),
        forced_tool_choice=bool(entry["forced_tool_choice"]),
        chars_per_token=float(entry.get("chars_per_token", DEFAULT_CHARS_PER_TOKEN)),
    )


def rules_for(model: str) -> ModelRules | None:
    """The rules of ``model``'s family, or None for a model the table does not know."""
    families = rule_table().families
    if model in families:
        return families[model]
    matches = [name for name in families if model.startswith(name + "-")]
    return families[max(matches, key=len)] if matches else None


def chars_per_token(model: str) -> float:
    """Characters of English prose per token for ``model``, for estimates."""
    rules = rules_for(model)
    return rules.chars_per_token if rules is not None else DEFAULT_CHARS_PER_TOKEN


def anthropic_refusals(
    model: str,
    *,
    temperature: float | None,
    effort: str | None,
    max_tokens: int,
    extra: Mapping[str, Any],
) -> Iterator[Refusal]:
    """Every setting of an Anthropic request for ``model`` that the API would answer 400."""
    table = rule_table()
    if temperature is not None:
        yield _sampling_refusal("temperature", model, table)
    for name in table.removed_parameters:
        if name in extra:
            yield _sampling_refusal("extra", model, table, name)
    rules = rules_for(model)
    if rules is None:
        return
    yield from _effort_refusals(model, rules, effort)
    if rules.max_output is not None and max_tokens > rules.max_output:
        yield Refusal(
            "max_tokens",
            f"max_tokens {max_tokens} is more than {model} writes ({rules.max_output})",
            f"set max_tokens to at most {rules.max_output}",
        )
    yield from _thinking_refusals(model, rules, extra.get("thinking"))
    yield from _thinking_effort_refusals(model, rules, extra.get("thinking"), effort)


def _sampling_refusal(key: str, model: str, table: RuleTable, name: str = "") -> Refusal:
    shown = name or key
    return Refusal(
        key,
        f"{model} refuses {shown}: {table.removed_note}",
        f"remove {shown}; to trade depth for speed, set effort: (low, medium, high"
        ", xhigh or max) where the model takes it",
    )


def _effort_refusals(model: str, rules: ModelRules, effort: str | None) -> Iterator[Refusal]:
    if effort is None:
        return
    if rules.effort is None:
        yield Refusal(
            "effort",
            f"{model} takes no effort setting",
            "remove effort:, or use a model that takes it (e.g. claude-haiku-5-5)",
        )
    elif effort not in rules.effort:
        yield Refusal(
            "effort",
            f'{model} does not take effort "{effort}"',
            "use one of " + ", ".join(rules.effort),
        )


def _thinking_refusals(model: str, rules: ModelRules, thinking: Any) -> Iterator[Refusal]:
    kind = thinking.get("type") if isinstance(thinking, Mapping) else None
    if kind is None or kind in rules.thinking_accepted:
        return
    hint = (
        "remove extra.thinking: this model thinks adaptively by default; set effort: to "
        "control how much"
        if rules.thinking_default == "adaptive"
        else "use extra.thinking.type " + " or ".join(rules.thinking_accepted)
    )
    if kind == "disabled" and "between_tools" in rules.thinking_accepted:
        hint += ' (or thinking type "between_tools", the least this model thinks)'
    yield Refusal("extra", f'{model} refuses thinking type "{kind}"', hint)


def _thinking_effort_refusals(
    model: str, rules: ModelRules, thinking: Any, effort: str | None
) -> Iterator[Refusal]:
    """A thinking type the model takes only up to an effort, asked for above it.

    Turning thinking (mostly) off is taken only at moderate effort: Haiku 5.5 and Opus 5 answer
    400 to ``disabled``, Sonnet 5.5 to ``between_tools``, at xhigh or max. With no ``effort:``
    the model's default applies, so that is what is compared.
    """
    kind = thinking.get("type") if isinstance(thinking, Mapping) else None
    limit = rules.thinking_max_effort.get(kind) if isinstance(kind, str) else None
    level = effort or rules.effort_default
    if limit is None or level is None or _rank(level) <= _rank(limit):
        return
    allowed = ", ".join(EFFORT_LEVELS[: _rank(limit) + 1])
    shown = f'effort "{level}"' if effort else f'its default effort "{level}"'
    yield Refusal(
        "effort" if effort else "extra",
        f'{model} refuses thinking type "{kind}" at {shown} (only at {allowed})',
        f"lower effort: to {limit} (or below), or remove extra.thinking to let the model "
        "think adaptively at this effort",
    )


def _rank(level: str) -> int:
    """Where an effort level stands, lowest first; an unknown one (refused above) as highest."""
    return EFFORT_LEVELS.index(level) if level in EFFORT_LEVELS else len(EFFORT_LEVELS)


def check_spec_models(spec: PipelineSpec, lines: Mapping[tuple[Any, ...], int], label: str) -> None:
    """Raise a ``SpecError`` naming the line, the step and the model of the first setting a
    model of the config would refuse (the step's model and each of its fallbacks)."""
    for index, step in enumerate(spec.steps):
        if not isinstance(step, LLMStep) or not (step.model or spec.llm.model):
            continue
        params = spec.llm_params(step)
        for provider, model in _targets(params):
            if provider != "anthropic":
                continue
            refusals = anthropic_refusals(
                model,
                temperature=params.temperature,
                effort=params.effort,
                max_tokens=params.max_tokens,
                extra=params.extra,
            )
            for refusal in refusals:
                line = lines.get(("steps", index, refusal.key)) or lines.get(("llm", refusal.key))
                where = f"{label}:{line}" if line else label
                raise SpecError(f'{where}: step "{step.id}": {refusal.message}', hint=refusal.hint)


def _targets(params: LLMParams) -> Iterator[tuple[str, str]]:
    yield params.provider, params.model
    for fallback in params.fallback_models:
        yield fallback.provider or params.provider, fallback.model
