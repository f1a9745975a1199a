"""``pipeline prices``: the price table stepline costs calls with, its date, and overrides."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stepline.cli.options import DebugOption, JsonOption, print_json

if TYPE_CHECKING:
    from stepline.providers.pricing import PriceListing
    from stepline.spec import ModelPrice


def prices_command(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Merge this config's pricing: into the table."),
    ] = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Show the LLM price table (USD per million tokens), its date and how to override it."""
    from stepline.providers.pricing import price_listing
    from stepline.spec import load_spec

    overrides = None
    if config is not None:
        overrides = load_spec(config).pricing
    listing = price_listing(overrides)
    if as_json:
        print_json(_listing_json(listing))
        return
    _print_table(listing)


def _print_table(listing: PriceListing) -> None:
    """Model ids never fold; at 80 columns the 1-hour write and the context window give way."""
    from rich.console import Console

    from stepline.cli.render import make_consoles
    from stepline.cli.tables import Column, FittedTable

    console: Console = make_consoles()[0]
    columns = [
        Column("model"),
        *(Column(name, justify="right") for name in ("input", "output", "write 5m")),
        Column("write 1h", justify="right", drop=2),
        Column("read", justify="right"),
        Column("context", justify="right", drop=1),
    ]
    table = FittedTable(columns, title=f"USD per million tokens (Claude API, {listing.updated})")
    for name, price in listing.models.items():
        marked = f"{name} *" if name in listing.from_config else name
        table.add_row(marked, *_prices(price), _tokens(price.context_window))
        for tier in price.tiers:
            tiered = price.for_prompt(tier.above_prompt_tokens + 1)
            label = f"  prompt > {_tokens(tier.above_prompt_tokens)}"
            table.add_row(label, *_prices(tiered), "")
    console.print(table)
    if listing.from_config:
        console.print("* from the config's pricing:")
    console.print(
        "write and read: the prompt cache. Message Batches cost half. Unlisted models cost "
        "unknown, never $0: add or override them under pricing: in the config "
        "(docs/config.md#cost)."
    )


def _prices(price: ModelPrice) -> list[str]:
    from stepline.providers.pricing import cache_prices

    return [f"${value:g}" for value in (price.input, price.output, *cache_prices(price))]


def _tokens(count: int | None) -> str:
    """1M, 200k: a context window at a glance."""
    if count is None:
        return "?"
    if count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    return f"{count // 1000}k" if count % 1000 == 0 else f"{count:,}"


def _listing_json(listing: PriceListing) -> dict[str, Any]:
    return {
        "updated": listing.updated,
        "models": {
            name: {**price.model_dump(), "from_config": name in listing.from_config}
            for name, price in listing.models.items()
        },
    }
