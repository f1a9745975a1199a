"""LLM providers behind one seam, created by name.

Adapters import their SDKs lazily (inside ``create_provider``) so commands that make no LLM
calls never pay for importing them.
"""

from __future__ import annotations

from pydantic import SecretStr

from stepline.errors import InputError
from stepline.providers.base import Completion, LLMRequest, Provider, Usage
from stepline.settings import Settings


def check_credentials(provider: str, settings: Settings, base_url: str | None = None) -> str | None:
    """The provider's key (None where none is needed); fail naming the variable to set."""
    if provider == "anthropic":
        key = _secret(settings.anthropic_api_key)
        if key is None:
            raise InputError(
                "ANTHROPIC_API_KEY is not set; the pipeline has LLM steps that call Anthropic",
                hint="export ANTHROPIC_API_KEY=... (it is read from the environment only)",
            )
        return key
    if provider == "openai":
        key = _secret(settings.openai_api_key)
        if key is None and not (base_url or settings.openai_base_url):
            raise InputError(
                "OPENAI_API_KEY is not set and no base_url is given for provider openai",
                hint="export OPENAI_API_KEY=... for OpenAI, or set base_url (or "
                "OPENAI_BASE_URL) to a local server such as http://localhost:11434/v1",
            )
        return key
    if provider == "replay":
        return None  # answers from a cassette; the cassette's presence is checked apart
    raise InputError(f'unknown provider "{provider}"', hint="providers: anthropic, openai, replay")


def create_provider(provider: str, *, settings: Settings, base_url: str | None) -> Provider:
    """Build the adapter for ``provider`` (credentials come from ``settings``)."""
    api_key = check_credentials(provider, settings, base_url)
    if provider == "replay":
        raise InputError(
            "provider replay can only be a step's own provider, not a fallback",
            hint="remove the replay entry from fallback_models",
        )
    if provider == "openai":
        from stepline.providers.openai import OpenAICompatibleProvider

        return OpenAICompatibleProvider(
            api_key=api_key, base_url=base_url or settings.openai_base_url
        )
    from stepline.providers.anthropic import AnthropicProvider

    return AnthropicProvider(api_key=api_key or "", base_url=base_url)


def _secret(value: SecretStr | None) -> str | None:
    """The secret's text, or None when it is unset or blank."""
    if value is None or not value.get_secret_value().strip():
        return None
    return value.get_secret_value()


__all__ = [
    "Completion",
    "LLMRequest",
    "Provider",
    "Usage",
    "check_credentials",
    "create_provider",
]
