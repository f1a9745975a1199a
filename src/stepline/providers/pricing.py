"""What a call cost: token counts times a price table shipped with stepline.

The same table holds each model's context window, for refusing prompts that cannot fit.

The table (``prices.json``, USD per million tokens, with the date it was taken) covers the
models whose prices were published when it was written; ``pricing:`` in a config adds or
overrides models. A model found in neither has an unknown cost, never $0: totals then say
how many calls they could not price.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from stepline.providers.base import Usage
from stepline.spec import ModelPrice

CACHE_WRITE_MULTIPLIER = 1.25  # Anthropic: a 5-minute cache write costs 1.25x input
CACHE_WRITE_1H_MULTIPLIER = 2.0  # a 1-hour cache write costs 2x input
CACHE_READ_MULTIPLIER = 0.1  # a cache read costs 0.1x input
BATCH_MULTIPLIER = 0.5  # Anthropic's Message Batches: every token type at half price
DEFAULT_CACHE_MIN_TOKENS = 1024  # the shortest cacheable prefix of most Anthropic models
_DATE_SUFFIX = re.compile(r"-\d{8}$")


@dataclass(frozen=True)
class PriceTable:
    """Prices by model name, and the date they were taken."""

    updated: str
    models: Mapping[str, ModelPrice]


@lru_cache(maxsize=1)
def shipped_prices() -> PriceTable:
    data = json.loads(resources.files("stepline.providers").joinpath("prices.json").read_text())
    models = {name: ModelPrice.model_validate(price) for name, price in data["models"].items()}
    return PriceTable(updated=data["updated"], models=models)


class Pricer:
    """Prices calls with the shipped table, overridden by a config's ``pricing:``."""

    def __init__(self, overrides: Mapping[str, ModelPrice] | None = None) -> None:
        self._prices = {**shipped_prices().models, **(overrides or {})}

    def price(self, model: str) -> ModelPrice | None:
        """The price of ``model``, also found by its name without a ``-YYYYMMDD`` suffix."""
        return self._prices.get(model) or self._prices.get(_DATE_SUFFIX.sub("", model))

    def context_window(self, model: str) -> int | None:
        """The most tokens ``model`` reads (prompt and reply), where the table knows it."""
        price = self.price(model)
        return price.context_window if price is not None else None

    def cache_min_tokens(self, model: str) -> int:
        """The shortest prefix ``model`` caches (the common minimum where the table is silent)."""
        price = self.price(model)
        known = price.cache_min_tokens if price is not None else None
        return known or DEFAULT_CACHE_MIN_TOKENS

    def cost_usd(
        self, model: str, usage: Usage, *, batch: bool = False, prompt_tokens: float | None = None
    ) -> float | None:
        """The call's cost in USD (at batch prices with ``batch``), or None when the model's
        price is unknown. A tiered price is chosen by the request's prompt size (input, cache
        reads and writes), or by ``prompt_tokens`` where an estimate prices parts apart."""
        listed = self.price(model)
        if listed is None:
            return None
        if prompt_tokens is None:
            prompt_tokens = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
        price = listed.for_prompt(prompt_tokens)
        cache_write, cache_write_1h, cache_read = cache_prices(price)
        long_writes = min(usage.cache_write_1h_tokens, usage.cache_write_tokens)
        micro_usd = (
            usage.input_tokens * price.input
            + usage.output_tokens * price.output
            + (usage.cache_write_tokens - long_writes) * cache_write
            + long_writes * cache_write_1h
            + usage.cache_read_tokens * cache_read
        )
        if batch:
            micro_usd *= BATCH_MULTIPLIER
        return round(micro_usd / 1_000_000, 8)


def cache_prices(price: ModelPrice) -> tuple[float, float, float]:
    """A model's 5-minute write, 1-hour write and read prices, from its input price by
    Anthropic's multipliers where the table does not list them."""
    return (
        price.cache_write
        if price.cache_write is not None
        else price.input * CACHE_WRITE_MULTIPLIER,
        price.cache_write_1h
        if price.cache_write_1h is not None
        else price.input * CACHE_WRITE_1H_MULTIPLIER,
        price.cache_read if price.cache_read is not None else price.input * CACHE_READ_MULTIPLIER,
    )


@dataclass(frozen=True)
class PriceListing:
    """The price table as ``pipeline prices`` shows it: the shipped table's date and every
    model's prices, with the names a config's ``pricing:`` adds or overrides."""

    updated: str
    models: Mapping[str, ModelPrice]
    from_config: frozenset[str]


def price_listing(overrides: Mapping[str, ModelPrice] | None = None) -> PriceListing:
    """The shipped prices merged with a config's ``pricing:``, models in name order."""
    shipped = shipped_prices()
    merged = {**shipped.models, **(overrides or {})}
    return PriceListing(
        updated=shipped.updated,
        models=dict(sorted(merged.items())),
        from_config=frozenset(overrides or ()),
    )
