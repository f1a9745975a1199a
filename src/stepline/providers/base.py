"""The provider seam: one request type, one completion type, one small protocol.

Steps build an ``LLMRequest`` and get back a ``Completion``; they never see an SDK. The LLM
layer (retries, cache, fallbacks, records) wraps providers at this seam without changing steps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


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
    cache_hit: bool = False
    request_hash: str | None = None

    def to_cache(self) -> dict[str, Any]:
        """What the response cache keeps of a completion (no attempt or cost details)."""
        return {
            "text": self.text,
            "model": self.model,
            "stop_reason": self.stop_reason,
            "usage": asdict(self.usage),
        }

    @classmethod
    def from_cache(cls, data: dict[str, Any]) -> Completion:
        return cls(
            text=data["text"],
            model=data["model"],
            stop_reason=data.get("stop_reason"),
            usage=Usage(**data.get("usage", {})),
            attempts=0,
            cost_usd=0.0,
            cache_hit=True,
        )


class Provider(Protocol):
    """An LLM API adapter. Implementations translate their SDK's errors into ours."""

    name: str

    async def complete(self, request: LLMRequest) -> Completion: ...

    async def aclose(self) -> None: ...
