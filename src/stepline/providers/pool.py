"""One provider client per (provider, base_url) for the life of a run, closed at the end.

Reusing clients keeps HTTP connections warm across steps; closing them explicitly avoids
"unclosed client" warnings and leaked sockets when a run ends, fails or is interrupted.
"""

from __future__ import annotations

from collections.abc import Callable

from stepline.providers import create_provider
from stepline.providers.base import Provider
from stepline.settings import Settings

ProviderFactory = Callable[[str, str | None], Provider]


class ProviderPool:
    """Hands out providers by name and base URL, creating each once."""

    def __init__(self, settings: Settings, factory: ProviderFactory | None = None) -> None:
        self._settings = settings
        self._factory = factory
        self._providers: dict[tuple[str, str | None], Provider] = {}

    def get(self, provider: str, base_url: str | None) -> Provider:
        key = (provider, base_url)
        if key not in self._providers:
            if self._factory is not None:
                self._providers[key] = self._factory(provider, base_url)
            else:
                self._providers[key] = create_provider(
                    provider, settings=self._settings, base_url=base_url
                )
        return self._providers[key]

    async def aclose(self) -> None:
        providers, self._providers = list(self._providers.values()), {}
        for provider in providers:
            await provider.aclose()
