"""Call records: one line per attempt at an LLM call in the run's ``llm-calls.jsonl``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from stepline.providers.base import Completion, LLMRequest


@dataclass(frozen=True)
class CallSite:
    """Who asked: the step, and in a fan-out step the item."""

    step: str
    item_key: str | None = None


@dataclass(frozen=True)
class CallRecord:
    """One attempt at one LLM call, as written to the run's ``llm-calls.jsonl``."""

    step: str
    attempt: int
    provider: str
    model_requested: str
    request_hash: str
    system: str | None
    prompt: str
    outcome: str  # "ok" | "error"
    latency_s: float
    model: str | None = None
    response: str | None = None
    stop_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_write_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_1h_tokens: int | None = None  # of cache_write_tokens, kept an hour
    cost_usd: float | None = None
    cache_hit: bool = False
    replayed: bool = False
    error: str | None = None
    status_code: int | None = None
    item_key: str | None = None
    followups: list[dict[str, str]] = field(default_factory=list)  # repair turns sent after it
    batch_id: str | None = None  # sent in this provider batch (priced at batch rates)

    @classmethod
    def pending(
        cls,
        *,
        site: CallSite,
        attempt: int,
        provider: str,
        model: str,
        key: str,
        request: LLMRequest,
    ) -> CallRecord:
        """The record of a call about to be made (or answered from a store)."""
        return cls(
            step=site.step,
            item_key=site.item_key,
            attempt=attempt,
            provider=provider,
            model_requested=model,
            request_hash=key,
            system=request.system,
            prompt=request.prompt,
            followups=request.messages()[1:],
            outcome="pending",
            latency_s=0.0,
        )

    def answered(self, completion: Completion, latency_s: float) -> CallRecord:
        usage = completion.usage
        return replace(
            self,
            outcome="ok",
            latency_s=round(latency_s, 4),
            model=completion.model,
            response=completion.text,
            stop_reason=completion.stop_reason,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_1h_tokens=usage.cache_write_1h_tokens or None,
            cost_usd=completion.cost_usd,
            cache_hit=completion.cache_hit,
        )

    def failed(self, error: str, status_code: int | None, latency_s: float) -> CallRecord:
        return replace(
            self,
            outcome="error",
            latency_s=round(latency_s, 4),
            error=error,
            status_code=status_code,
        )

    def to_json(self) -> dict[str, Any]:
        # Flat fields: a shallow dict is enough and much cheaper than asdict's deep copy.
        return {name: getattr(self, name) for name in _FIELD_NAMES}


RecordCall = Callable[[CallRecord], None]


_FIELD_NAMES = tuple(field.name for field in fields(CallRecord))
