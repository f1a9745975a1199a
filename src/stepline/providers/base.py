"""The provider seam: one request type, one completion type, one small protocol.

Steps build an ``LLMRequest`` and get back a ``Completion``; they never see an SDK. The LLM
layer (retries, cache, fallbacks, records) wraps providers at this seam without changing steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from stepline.errors import ProviderError


@dataclass(frozen=True)
class Turn:
    """A message after the first prompt: the model's reply, or our answer to it."""

    role: Literal["user", "assistant"]
    content: str


@dataclass(frozen=True)
class LLMRequest:
    """Everything that shapes one call's reply; contains no credentials.

    ``schema`` and ``prompt_version`` are not sent: they are part of the request's identity
    (its cache key) because they decide whether a reply is accepted and when it is stale.
    """

    model: str
    prompt: str
    max_tokens: int
    system: str | None = None
    temperature: float | None = None
    effort: str | None = None  # low | medium | high | xhigh | max; None: the model's default
    stop: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    followups: tuple[Turn, ...] = ()  # repair turns: the rejected reply, then what was wrong
    schema: dict[str, Any] | None = None
    prompt_version: str | None = None
    # Prompt caching: None sends no cache markers; N marks the system prompt and the prompt's
    # first N characters (0: the system prompt alone) as one cached prefix. Not hashed: where
    # the cache breakpoint sits changes the bill, never the reply.
    cached_chars: int | None = None
    cache_ttl: str | None = None  # "1h" keeps the entry an hour (batch mode), else 5 minutes

    def messages(self) -> list[dict[str, str]]:
        """The conversation in the shape both chat APIs take (system prompt apart)."""
        first = {"role": "user", "content": self.prompt}
        return [first] + [{"role": turn.role, "content": turn.content} for turn in self.followups]


MAX_REPLY_BYTES = 10 * 1024 * 1024
"""The largest reply text (UTF-8) a provider accepts. Far beyond any model's output limit, so
only a broken or hostile server reaches it; a streamed reply is cut off as soon as it passes
the cap, an unstreamed one is refused once read."""


class ReplyMeter:
    """Counts a reply's bytes as it arrives and refuses it past ``MAX_REPLY_BYTES``."""

    def __init__(self, api: str) -> None:
        self.api = api
        self.size = 0

    def add(self, text: str) -> None:
        """Count ``text``; a ``ProviderError`` (not retried) once the reply is over the cap."""
        self.size += len(text.encode("utf-8", "surrogatepass"))
        if self.size > MAX_REPLY_BYTES:
            raise ProviderError(
                f"{self.api}: the reply is larger than {MAX_REPLY_BYTES // (1024 * 1024)} MiB, "
                "stepline's cap on one reply; refusing it",
                hint="lower max_tokens or ask for a shorter reply; a server that sends this "
                "much text is probably misbehaving",
            )


@dataclass(frozen=True)
class StreamProgress:
    """How far a streamed reply has come, for a live progress line."""

    model: str
    output_tokens: int  # the provider's count where it reports one, else an estimate
    elapsed_s: float


@dataclass(frozen=True)
class Delivery:
    """How one request travels; nothing here changes the reply, so none of it is hashed."""

    stream: bool = False
    timeout: float | None = None  # seconds; None keeps the SDK's default
    on_progress: Callable[[StreamProgress], None] | None = None


@dataclass(frozen=True)
class Usage:
    """Tokens of one call; cache writes and reads are billed apart from plain input."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_1h_tokens: int = 0  # of cache_write_tokens, those kept an hour (dearer)


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
    notices: tuple[str, ...] = ()  # things the provider wants the user told (deprecations)

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

    async def complete(self, request: LLMRequest, delivery: Delivery) -> Completion: ...

    async def count_tokens(self, request: LLMRequest) -> int | None:
        """The request's input tokens by the provider's own count; None where it has none."""
        ...

    async def aclose(self) -> None: ...
