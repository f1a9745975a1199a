"""What a request is: the models it may go to, its hashed identity, and where it was recorded.

The request hash is the one name a call has everywhere: the response cache's key, the
cassette's key, and the ``request_hash`` in call records. It covers everything that shapes the
reply and never the credentials.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

from stepline.hashing import hash_value
from stepline.providers.base import LLMRequest
from stepline.spec import FallbackModel, LLMParams

REPLAY = "replay"


class Recording(Protocol):
    """A cassette of recorded completions (``store.cassette.Cassette``)."""

    def get(self, key: str) -> dict[str, Any] | None: ...

    def endpoints(self) -> list[tuple[str, str | None]]: ...

    def append(self, key: str, request: dict[str, Any], completion: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Target:
    """A model to ask: the primary or one of the fallbacks, with its provider and endpoint."""

    provider: str
    model: str
    base_url: str | None


def targets(params: LLMParams) -> list[Target]:
    """The primary model, then each fallback (inheriting provider and base_url)."""
    first = Target(params.provider, params.model, params.base_url)
    return [first] + [_fallback(first, entry) for entry in params.fallback_models]


def cache_label(pipeline: str, step_id: str) -> str:
    """Which step a cache entry belongs to (only for telling a changed key from a new one)."""
    return f"{pipeline}/{step_id}"


def request_hash(target: Target, request: LLMRequest) -> str:
    """A tagged hash of everything that shapes the reply (never the credentials)."""
    return hash_value(request_fields(target, request))


def request_fields(target: Target, request: LLMRequest) -> dict[str, Any]:
    """The hashed identity of a request.

    Keys added after the first release enter only when set, so adding a setting never
    invalidates the caches and cassettes users already have.
    """
    fields: dict[str, Any] = {
        "provider": target.provider,
        "base_url": target.base_url,
        "model": target.model,
        "system": request.system,
        "prompt": request.prompt,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
    }
    optional = {
        "effort": request.effort,
        "stop": list(request.stop),
        "extra": request.extra,
        "followups": [asdict(turn) for turn in request.followups],
        "schema": request.schema,
        "prompt_version": request.prompt_version,
    }
    fields.update((key, value) for key, value in optional.items() if value)
    return fields


def recorded_keys(
    cassette: Recording, target: Target, request: LLMRequest
) -> list[tuple[Target, str]]:
    """Where a request may be in a cassette; ``provider: replay`` answers as whichever
    endpoint recorded the cassette."""
    if target.provider != REPLAY:
        return [(target, request_hash(target, request))]
    recorded = [Target(p, target.model, url) for p, url in cassette.endpoints()] or [target]
    return [(each, request_hash(each, request)) for each in recorded]


def find_recorded(
    cassette: Recording, target: Target, request: LLMRequest
) -> tuple[Target, str, dict[str, Any]] | None:
    """The recorded completion for ``request``, with the endpoint and key it was found under."""
    for each, key in recorded_keys(cassette, target, request):
        data = cassette.get(key)
        if data is not None:
            return each, key, data
    return None


def _fallback(primary: Target, entry: FallbackModel) -> Target:
    return Target(
        provider=entry.provider or primary.provider,
        model=entry.model,
        base_url=entry.base_url if entry.base_url is not None else primary.base_url,
    )
