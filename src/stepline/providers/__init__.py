"""LLM providers behind one seam, created by name.

Adapters import their SDKs lazily (inside ``create_provider``) so commands that make no LLM
calls never pay for importing them.
"""

from __future__ import annotations

from stepline.errors import InputError
from stepline.providers.base import Completion, LLMRequest, Provider, Usage
from stepline.settings import Settings


def check_credentials(provider: str, settings: Settings) -> str:
    """Return the provider's key; fail with the variable's name when it is missing."""
    if provider == "anthropic":
        key = settings.anthropic_api_key
        if key is None or not key.get_secret_value().strip():
            raise InputError(
                "ANTHROPIC_API_KEY is not set; the pipeline has LLM steps that call Anthropic",
                hint="export ANTHROPIC_API_KEY=... (it is read from the environment only)",
            )
        return key.get_secret_value()
    raise InputError(f'unknown provider "{provider}"', hint="providers: anthropic")


def create_provider(provider: str, *, settings: Settings, base_url: str | None) -> Provider:
    """Build the adapter for ``provider`` (credentials come from ``settings``)."""
    api_key = check_credentials(provider, settings)
    from stepline.providers.anthropic import AnthropicProvider

    return AnthropicProvider(api_key=api_key, base_url=base_url)


__all__ = [
    "Completion",
    "LLMRequest",
    "Provider",
    "Usage",
    "check_credentials",
    "create_provider",
]
