"""Prices of today's models, tiers chosen per request by prompt size, never $0 when unknown."""

from __future__ import annotations

import pytest

from stepline.providers.base import Usage
from stepline.providers.pricing import Pricer, shipped_prices
from stepline.spec import ModelPrice

MILLION = 1_000_000


def test_haiku_5_5_charges_the_whole_request_more_above_100000_prompt_tokens() -> None:
    pricer = Pricer()

    at_limit = pricer.cost_usd("claude-haiku-5-5", Usage(input_tokens=100_000, output_tokens=1000))
    over = pricer.cost_usd("claude-haiku-5-5", Usage(input_tokens=100_001, output_tokens=1000))

    assert at_limit == pytest.approx(100_000 * 0.1 / MILLION + 1000 * 0.5 / MILLION)
    assert over == pytest.approx(100_001 * 0.5 / MILLION + 1000 * 2.5 / MILLION)


def test_cache_reads_and_writes_count_toward_the_prompt_size() -> None:
    usage = Usage(input_tokens=10, cache_read_tokens=90_000, cache_write_tokens=10_000)

    cost = Pricer().cost_usd("claude-haiku-5-5", usage)

    assert cost == pytest.approx((10 * 0.5 + 90_000 * 0.05 + 10_000 * 0.625) / MILLION)


def test_batch_halves_the_tier_price_too() -> None:
    usage = Usage(input_tokens=200_000, output_tokens=100)

    live = Pricer().cost_usd("claude-haiku-5-5", usage)
    batch = Pricer().cost_usd("claude-haiku-5-5", usage, batch=True)

    assert batch == pytest.approx(live / 2)  # type: ignore[operator]
    assert batch == pytest.approx((200_000 * 0.25 + 100 * 1.25) / MILLION)


def test_sonnet_5_5_cache_reads_cost_a_twentieth_of_input_not_a_tenth() -> None:
    cost = Pricer().cost_usd("claude-sonnet-5-5", Usage(cache_read_tokens=MILLION))

    assert cost == pytest.approx(0.10)


@pytest.mark.parametrize("model", ["claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5"])
def test_every_current_model_is_priced_with_its_window_and_cache_minimum(model: str) -> None:
    price = Pricer().price(model)

    assert price is not None and price.input > 0
    assert price.context_window == 1_000_000 and price.cache_min_tokens == 512


def test_an_unknown_model_costs_unknown_never_zero() -> None:
    assert Pricer().cost_usd("claude-next-9", Usage(input_tokens=10)) is None


def test_a_config_override_can_carry_tiers() -> None:
    price = ModelPrice.model_validate(
        {"input": 1, "output": 2, "tiers": [{"above_prompt_tokens": 10, "input": 3, "output": 4}]}
    )
    pricer = Pricer({"local-model": price})

    assert pricer.cost_usd("local-model", Usage(input_tokens=10)) == pytest.approx(10 / MILLION)
    assert pricer.cost_usd("local-model", Usage(input_tokens=11, output_tokens=1)) == (
        pytest.approx((11 * 3 + 4) / MILLION)
    )


def test_an_estimate_prices_each_part_at_the_tier_of_the_whole_prompt() -> None:
    pricer = Pricer()

    output_alone = pricer.cost_usd("claude-haiku-5-5", Usage(output_tokens=MILLION))
    output_of_a_long_prompt = pricer.cost_usd(
        "claude-haiku-5-5", Usage(output_tokens=MILLION), prompt_tokens=150_000
    )

    assert (output_alone, output_of_a_long_prompt) == (pytest.approx(0.5), pytest.approx(2.5))


def test_the_table_is_dated() -> None:
    assert shipped_prices().updated >= "2026-12-07"
