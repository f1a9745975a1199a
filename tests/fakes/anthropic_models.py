"""What the Messages API refuses, per model, as Anthropic documents it (December 2026).

Written from Anthropic's pages, not from stepline's ``model-rules.json``, so that a mistake in
stepline's table shows up as a test failure instead of being copied into the fake:

- API versioning page: version ``2026-10-21`` removed ``temperature``, ``top_p`` and ``top_k``;
  a request that sends any of them gets a 400, on every model.
- Sonnet 5.5 migration guide: "thinking budgets, sampling parameters, assistant prefill,
  forced tool choice, and ``thinking: {"type": "disabled"}``" return a 400; its what's-new
  page: the message for ``disabled`` points to ``between_tools``, which (like ``disabled`` on
  Haiku 5.5 and Opus 5, per their pages) is taken only at effort low, medium or high: at
  xhigh or max it is a 400.
- Haiku 5.5 and Opus 5.5 pages: manual thinking budgets and assistant prefill are refused;
  Opus 5.5 also refuses ``disabled`` thinking and forced tool choice.
- Thinking troubleshooting page: Opus 4.7 and later refuse ``thinking.type.enabled``; models
  before 4.6 (Haiku 4.5, Sonnet 4.5, Opus 4.5) have no adaptive thinking.
- Effort page: ``output_config.effort`` is low, medium, high, xhigh or max; Haiku 4.5 and
  Sonnet 4.5 take none, Opus 4.5 only low to high, the 4.6 models no xhigh.
- Models overview: 128K output tokens on 4.6 and later models, 64K on the 4.5 models.

What a model does unasked (:func:`default_thinking`), from the same pages: the Claude 5.x
models think adaptively when a request has no ``thinking`` field, and the thinking counts
against ``max_tokens``; Sonnet 5.5 and Opus 5.5 send it with ``display`` "omitted" (an empty
``thinking`` text, a signature, the tokens still billed). Models before them think only when
asked (``adaptive``, from 4.6 on).
"""

from __future__ import annotations

from typing import Any, Literal

REMOVED_IN_2026_10_21 = ("temperature", "top_p", "top_k")
LEVELS = ("low", "medium", "high", "xhigh", "max")

_FIVE: tuple[str, ...] = ("claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5")
_FIVE += ("claude-opus-5", "claude-sonnet-5", "claude-fable-5")
_ADAPTIVE_ONLY = ("claude-opus-5-5", "claude-fable-5")
_NO_FORCED_TOOLS = ("claude-opus-5-5", "claude-sonnet-5-5", "claude-fable-5")
_NO_ENABLED = (*_FIVE, "claude-opus-4-7", "claude-opus-4-8")
_NO_PREFILL = (*_NO_ENABLED, "claude-opus-4-6", "claude-sonnet-4-6")
_ADAPTIVE = _NO_PREFILL  # the same models: adaptive thinking came with 4.6
_OMITTED_BY_DEFAULT = ("claude-sonnet-5-5", "claude-opus-5-5")
#: Thinking types taken only up to effort high (xhigh and max: a 400).
_UP_TO_HIGH = {
    "disabled": ("claude-haiku-5-5", "claude-opus-5"),
    "between_tools": ("claude-sonnet-5-5",),
}
_BEFORE_4_6 = ("claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-5", "claude-opus-4-1")
_EFFORT = {
    "claude-haiku-4-5": (),
    "claude-sonnet-4-5": (),
    "claude-opus-4-1": (),
    "claude-opus-4-5": ("low", "medium", "high"),
    "claude-opus-4-6": ("low", "medium", "high", "max"),
    "claude-sonnet-4-6": ("low", "medium", "high", "max"),
}
THINKING_ERROR = (
    '"thinking.type.{kind}" is not supported for this model. Use "thinking.type.adaptive" '
    'and "output_config.effort" to control thinking behavior.'
)
#: Anthropic's exact words were not found; these follow the style of the message above.
BETWEEN_TOOLS_ERROR = (
    '"thinking.type.disabled" is not supported for this model. Use "thinking.type.between_tools" '
    'to turn off thinking before the first tool call, or "thinking.type.adaptive".'
)
THINKING_EFFORT_ERROR = (
    '"thinking.type.{kind}" is not supported with "output_config.effort" "{effort}". Use '
    '"thinking.type.adaptive" at effort "xhigh" or "max", or an effort of "high" or lower.'
)


def _is(model: str, families: tuple[str, ...]) -> bool:
    return any(model == name or model.startswith(name + "-") for name in families)


def _family(model: str, table: dict[str, Any]) -> Any:
    names = [name for name in table if model == name or model.startswith(name + "-")]
    return table[max(names, key=len)] if names else None


def refusal(body: dict[str, Any], api_version: str | None) -> str | None:
    """The 400 message the API gives ``body``, or None where it would answer."""
    model = str(body.get("model") or "")
    if api_version is None or api_version >= "2026-10-21":
        for name in REMOVED_IN_2026_10_21:
            if name in body:
                return f"{name}: Extra inputs are not permitted"
    elif _is(model, _NO_ENABLED) and "temperature" in body:
        return "`temperature` is deprecated for this model."
    return (
        _max_tokens_refusal(model, body.get("max_tokens"))
        or _effort_refusal(model, body.get("output_config"))
        or _thinking_refusal(model, body.get("thinking"), body.get("output_config"))
        or _conversation_refusal(model, body)
    )


def _max_tokens_refusal(model: str, max_tokens: Any) -> str | None:
    limit = 64_000 if _is(model, _BEFORE_4_6) else 128_000
    if model.startswith("claude-") and isinstance(max_tokens, int) and max_tokens > limit:
        return (
            f"max_tokens: {max_tokens} > {limit}, which is the maximum allowed number of "
            f"output tokens for {model}"
        )
    return None


def _effort_refusal(model: str, output_config: Any) -> str | None:
    effort = output_config.get("effort") if isinstance(output_config, dict) else None
    if effort is None:
        return None
    if effort not in LEVELS:
        return '"output_config.effort" must be one of: ' + ", ".join(f'"{v}"' for v in LEVELS)
    allowed = _family(model, _EFFORT)
    if allowed is not None and effort not in allowed:
        return f'"output_config.effort" value "{effort}" is not supported for this model'
    return None


def _thinking_refusal(model: str, thinking: Any, output_config: Any) -> str | None:
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind == "enabled" and _is(model, _NO_ENABLED):
        return THINKING_ERROR.format(kind=kind)
    if kind == "disabled" and _is(model, _ADAPTIVE_ONLY):
        return THINKING_ERROR.format(kind=kind)
    if kind == "disabled" and _is(model, ("claude-sonnet-5-5",)):
        return BETWEEN_TOOLS_ERROR
    # Every model's default effort is high or lower, so only an effort sent can be too high.
    effort = output_config.get("effort") if isinstance(output_config, dict) else None
    if effort in ("xhigh", "max") and _is(model, _UP_TO_HIGH.get(str(kind), ())):
        return THINKING_EFFORT_ERROR.format(kind=kind, effort=effort)
    if kind == "adaptive" and _is(model, _BEFORE_4_6):
        return "adaptive thinking is not supported on this model"
    return None


def _conversation_refusal(model: str, body: dict[str, Any]) -> str | None:
    messages = body.get("messages")
    if isinstance(messages, list) and messages and _is(model, _NO_PREFILL):
        last = messages[-1]
        if isinstance(last, dict) and last.get("role") == "assistant":
            return (
                "This model does not support assistant message prefill. The conversation "
                "must end with a user message."
            )
    tool_choice = body.get("tool_choice")
    forced = isinstance(tool_choice, dict) and tool_choice.get("type") in ("any", "tool")
    if forced and _is(model, _NO_FORCED_TOOLS):
        return 'tool_choice: type "tool" and "any" are not supported for this model.'
    return None


def default_thinking(body: dict[str, Any]) -> Literal["summarized", "omitted"] | None:
    """How the model thinks on ``body`` unless the reply is scripted otherwise: ``None`` (no
    thinking block), else the ``display`` of its thinking block.

    A 5.x model thinks with no ``thinking`` field; any model with adaptive thinking thinks when
    asked for it. ``disabled`` and ``between_tools`` (no tools here) write no thinking block.
    """
    model = str(body.get("model") or "")
    thinking = body.get("thinking")
    settings = thinking if isinstance(thinking, dict) else {}
    kind = settings.get("type")
    if not (kind is None and _is(model, _FIVE) or kind == "adaptive" and _is(model, _ADAPTIVE)):
        return None
    if settings.get("display") == "summarized":
        return "summarized"
    if settings.get("display") == "omitted" or _is(model, _OMITTED_BY_DEFAULT):
        return "omitted"
    return "summarized"
