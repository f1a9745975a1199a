"""Tokens and cost per call, per step and per run, checked against hand arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stepline.providers.base import Usage
from stepline.providers.pricing import Pricer, shipped_prices
from stepline.spec import ModelPrice
from tests.fakes import FakeLLMServer, Reply
from tests.helpers import write

CONFIG = """
name: costs
llm: {model: MODEL, retry: {attempts: 2, initial_delay: 1ms}}
PRICING
steps:
  - id: first
    kind: llm
    prompt: one
  - id: second
    kind: llm
    prompt: two
    needs: [first]  # after it, so the scripted replies reach them in this order
"""


def run_costs(cli, tmp_path: Path, model: str, pricing: str = "") -> dict:
    write(tmp_path / "in.txt", "x")
    write(
        tmp_path / "pipeline-config.yaml",
        CONFIG.replace("MODEL", model).replace("PRICING", pricing),
    )
    result = cli("run", "in.txt", "--run-id", "c")
    assert result.exit_code == 0, result.output
    return json.loads((tmp_path / ".pipeline/c/state.json").read_text())


def test_cost_of_calls_steps_and_run_with_cache_tokens(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    fake_llm.script(
        Reply(input_tokens=1000, output_tokens=200, cache_creation_input_tokens=4000),
        Reply(input_tokens=500, output_tokens=100, cache_read_input_tokens=4000),
    )

    state = run_costs(cli, tmp_path, "claude-haiku-4-5-20251001")

    # claude-haiku-4-5: $1 in, $5 out, $1.25 cache write, $0.10 cache read per million tokens
    first = (1000 * 1 + 200 * 5 + 4000 * 1.25) / 1e6
    second = (500 * 1 + 100 * 5 + 4000 * 0.10) / 1e6
    metrics = [step["metrics"] for step in state["steps"]]
    assert metrics[0]["cost_usd"] == pytest.approx(first)
    assert metrics[0]["cache_write_tokens"] == 4000
    assert metrics[1]["cost_usd"] == pytest.approx(second)
    assert metrics[1]["cache_read_tokens"] == 4000
    usage = state["usage"]
    assert usage["cost_usd"] == pytest.approx(first + second)
    assert (usage["requests"], usage["input_tokens"], usage["output_tokens"]) == (2, 1500, 300)
    records = (tmp_path / ".pipeline/c/llm-calls.jsonl").read_text().splitlines()
    assert json.loads(records[0])["cost_usd"] == pytest.approx(first)


def test_unknown_model_has_unknown_cost_and_one_warning(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    state = run_costs(cli, tmp_path, "claude-unreleased-9")

    assert [step["metrics"]["cost_usd"] for step in state["steps"]] == [None, None]
    assert state["usage"]["unpriced_calls"] == 2 and state["usage"]["cost_usd"] == 0
    events = (tmp_path / ".pipeline/c/events.jsonl").read_text()
    assert events.count("no price known for claude-unreleased-9") == 1
    listing = cli("list")
    assert "unknown" in listing.stdout and "$0.0000" not in listing.stdout


def test_pricing_in_the_config_prices_a_model(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    fake_llm.responder = lambda request: Reply(input_tokens=2_000_000, output_tokens=1_000_000)

    state = run_costs(
        cli, tmp_path, "local-model", "pricing:\n  local-model: {input: 0.5, output: 1.5}"
    )

    assert state["usage"]["cost_usd"] == pytest.approx(2 * (2 * 0.5 + 1 * 1.5))
    shown = cli("show", "c")
    assert "$2.5000" in shown.stdout and "$5.0000" in shown.stdout


def test_cache_prices_default_to_anthropic_multipliers():
    pricer = Pricer({"m": ModelPrice(input=2.0, output=8.0)})

    cost = pricer.cost_usd("m", Usage(cache_write_tokens=1_000_000, cache_read_tokens=1_000_000))

    assert cost == pytest.approx(2.0 * 1.25 + 2.0 * 0.1)


def test_shipped_price_table_is_dated_and_complete():
    table = shipped_prices()

    assert table.updated
    for name, price in table.models.items():
        assert price.output >= price.input > 0, name
        assert price.cache_write is not None and price.cache_read is not None, name
