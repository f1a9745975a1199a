"""The provider seam: one request type, one completion type, one small protocol.

Steps build an ``LLMRequest`` and get back a ``Completion``; they never see an SDK. The LLM
layer (retries, cache, fallbacks, records) wraps providers at this seam without changing steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class LLMRequest:
    """Everything a provider needs for one call; contains no credentials."""

    model: str
    prompt: str
    max_tokens: int
    system: str | None = None
    temperature: float | None = None


@dataclass(frozen=True)
class Usage:
    """Tokens of one call; cache writes and reads are billed apart from plain input."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0


@dataclass(frozen=True)
class Completion:
    """A provider's answer: the reply text, the model that answered, why it stopped.

    ``attempts``, ``model_requested`` and ``cost_usd`` are filled in by the caller (retries,
    fallbacks, the price table); ``cost_usd`` is None when the model's price is unknown.
    """

    text: str
    model: str
    stop_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    attempts: int = 1
    model_requested: str | None = None
    cost_usd: float | None = None


class Provider(Protocol):
    """An LLM API adapter. Implementations translate their SDK's errors into ours."""

    name: str

    async def complete(self, request: LLMRequest) -> Completion: ...

    async def aclose(self) -> None: ...
