"""What ``--dry-run`` estimates for LLM steps (``estimate_llm_steps``, ``budget_outlook``),
through ``preview_new_run`` / ``preview_resume`` in this process.

No key is set, so the tokens are the labelled heuristic (the model's characters per token,
rounded up) and nothing is sent; a cached reply comes from a run in-process against the
scripted provider. Prices are the shipped table's: Claude Haiku 5.5 costs $0.10 input and
$0.50 output per million tokens, $0.50 and $2.50 for a request over 100,000 prompt tokens.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from stepline.engine.api import preview_new_run, preview_resume
from stepline.engine.estimates import HEURISTIC, LLMEstimate
from stepline.engine.prepare import Preview, RunOptions
from stepline.spec.model_rules import chars_per_token
from tests.fakes.scripted import ScriptedProvider, reply
from tests.inprocess import InProcess

HAIKU_5_5 = "claude-haiku-5-5"
HAIKU_4_5 = "claude-haiku-4-5"  # $1 input, $5 output; 4 characters a token; 200,000-token window
UNPRICED = "claude-unlisted-9"
PROMPT = "Summarise: "  # the prompt before the input's text
MAX_TOKENS = 1000

CONFIG = """
name: estimated
llm:
  model: MODEL
  max_tokens: 1000
steps:
  - id: ask
    kind: llm
    prompt: "Summarise: {{ input.text }}"
"""

TWO_STEPS = """
name: estimated
llm:
  model: claude-haiku-5-5
  max_tokens: 1000
steps:
  - id: ask
    kind: llm
    prompt: "Summarise: {{ input.text }}"
  - id: followup
    kind: llm
    prompt: "Refine: {{ steps.ask }}"
"""

FAN_OUT = """
name: estimated
llm:
  model: claude-haiku-5-5
  max_tokens: 1000
  SETTINGS
steps:
  - id: label
    kind: llm
    for_each: input.lines
    prompt: "Ticket: {{ item }}"
"""
ITEMS = ("a", "abcd", "abcdefg")  # "Ticket: " + item: 9, 12 and 15 characters, 3 to 5 tokens


def bound(tokens: float, input_price: float, output_price: float, requests: int = 1) -> float:
    """The most ``requests`` requests cost: their input and a full reply each (USD/million)."""
    return (tokens * input_price + requests * MAX_TOKENS * output_price) / 1e6


def pipeline(folder: Path, config: str, text: str, **provider: Any) -> InProcess:
    run = InProcess(folder, config, text, provider=ScriptedProvider(**provider))
    assert run.settings.anthropic_api_key is None  # so no token count is asked over HTTP
    return run


def preview(run: InProcess, **options: Any) -> Preview:
    return preview_new_run(
        run.config_path,
        run.input_path,
        settings=run.settings,
        options=RunOptions(check_credentials=False, **options),
    )


def estimate_of(run: InProcess, step: str = "ask", **options: Any) -> LLMEstimate:
    [found] = [each for each in preview(run, **options).estimates if each.step == step]
    return found


@pytest.mark.parametrize(("model", "expected"), [(HAIKU_5_5, 3.0), (HAIKU_4_5, 4.0)])
def test_the_input_tokens_follow_the_models_characters_per_token(
    tmp_path: Path, model: str, expected: float
) -> None:
    text = "x" * 400
    estimate = estimate_of(pipeline(tmp_path, CONFIG.replace("MODEL", model), text))

    assert chars_per_token(model) == expected
    assert estimate.input_tokens == math.ceil(len(PROMPT + text) / expected)  # 137 or 103
    assert estimate.method == HEURISTIC and estimate.approximate
    assert estimate.max_output_tokens == MAX_TOKENS


@pytest.mark.parametrize(
    ("model", "input_price", "output_price"), [(HAIKU_5_5, 0.1, 0.5), (HAIKU_4_5, 1.0, 5.0)]
)
def test_the_cost_bound_prices_the_input_and_a_full_reply(
    tmp_path: Path, model: str, input_price: float, output_price: float
) -> None:
    estimate = estimate_of(pipeline(tmp_path, CONFIG.replace("MODEL", model), "x" * 400))

    assert estimate.input_tokens is not None
    expected = bound(estimate.input_tokens, input_price, output_price)
    assert estimate.cost_usd == pytest.approx(expected, rel=1e-9)
    assert estimate.mode == "live"
    assert estimate.costs["live"] == estimate.cost_usd


def test_haiku_5_5_above_100000_prompt_tokens_is_priced_at_the_dearer_tier(
    tmp_path: Path,
) -> None:
    text = "x" * (300_012 - len(PROMPT))  # 100,004 tokens

    estimate = estimate_of(pipeline(tmp_path, CONFIG.replace("MODEL", HAIKU_5_5), text))

    assert estimate.input_tokens == 100_004
    assert estimate.cost_usd == pytest.approx(bound(100_004, 0.5, 2.5), rel=1e-9)


def test_haiku_5_5_at_exactly_100000_prompt_tokens_keeps_the_base_price(tmp_path: Path) -> None:
    text = "x" * (300_000 - len(PROMPT))  # 100,000 tokens: not above the tier's threshold

    estimate = estimate_of(pipeline(tmp_path, CONFIG.replace("MODEL", HAIKU_5_5), text))

    assert estimate.input_tokens == 100_000
    assert estimate.cost_usd == pytest.approx(bound(100_000, 0.1, 0.5), rel=1e-9)


def test_an_unpriced_model_is_estimated_in_tokens_but_its_cost_is_unknown(tmp_path: Path) -> None:
    text = "x" * 400

    estimate = estimate_of(pipeline(tmp_path, CONFIG.replace("MODEL", UNPRICED), text))

    assert estimate.input_tokens == math.ceil(len(PROMPT + text) / 4.0)  # the default ratio
    assert estimate.cost_usd is None  # unknown, never $0
    assert estimate.costs
    assert all(cost is None for cost in estimate.costs.values())


def test_a_cached_reply_makes_the_estimate_a_hit_that_costs_nothing(tmp_path: Path) -> None:
    run = pipeline(tmp_path, CONFIG.replace("MODEL", HAIKU_5_5), "x" * 400, script=reply("done"))
    before = estimate_of(run)
    assert run.run(run_id="first").exit_code == 0

    after = estimate_of(run)

    assert before.cache == "miss (no entry)"
    assert before.cost_usd is not None and before.cost_usd > 0
    assert after.cache == "hit"
    assert after.cost_usd == 0.0
    assert all(cost == 0.0 for cost in after.costs.values())
    assert after.input_tokens == before.input_tokens  # still shown, just not paid for
    assert len(run.provider.received) == 1  # the run's call; the previews sent nothing


def test_a_changed_input_misses_the_cache_and_says_why(tmp_path: Path) -> None:
    run = pipeline(tmp_path, CONFIG.replace("MODEL", HAIKU_5_5), "x" * 400)
    assert run.run(run_id="first").exit_code == 0
    run.input_path.write_text("different notes", encoding="utf-8")

    estimate = estimate_of(run)

    assert estimate.cache == "miss (key changed)"
    assert estimate.cost_usd is not None and estimate.cost_usd > 0


def test_no_cache_estimates_the_full_cost_even_with_a_cached_reply(tmp_path: Path) -> None:
    run = pipeline(tmp_path, CONFIG.replace("MODEL", HAIKU_5_5), "x" * 400)
    assert run.run(run_id="first").exit_code == 0

    estimate = estimate_of(run, no_cache=True)

    assert estimate.cache == "skipped (--no-cache)"
    assert estimate.cost_usd == pytest.approx(bound(137, 0.1, 0.5), rel=1e-9)


def test_a_step_that_reads_an_earlier_steps_output_has_no_estimate(tmp_path: Path) -> None:
    estimates = preview(pipeline(tmp_path, TWO_STEPS, "x" * 400)).estimates

    assert [each.step for each in estimates] == ["ask", "followup"]
    followup = estimates[1]
    assert followup.input_tokens is None and followup.cost_usd is None
    assert followup.note is not None and '"ask"' in followup.note


def test_a_prompt_that_may_not_fit_the_window_is_noted(tmp_path: Path) -> None:
    text = "x" * (800_000 - len(PROMPT))  # 200,000 tokens, plus 1,000 for the reply

    estimate = estimate_of(pipeline(tmp_path, CONFIG.replace("MODEL", HAIKU_4_5), text))

    assert estimate.note is not None and "200,000" in estimate.note


# Fan-out steps: tokens per item times the items, and every mode side by side.


def write_fan_out(folder: Path, settings: str = "") -> InProcess:
    return pipeline(folder, FAN_OUT.replace("SETTINGS", settings), "\n".join(ITEMS) + "\n")


def test_a_fan_out_step_is_estimated_over_all_its_items(tmp_path: Path) -> None:
    estimate = estimate_of(write_fan_out(tmp_path), "label")

    assert estimate.items == 3
    assert estimate.input_tokens == 3 + 4 + 5
    assert estimate.max_output_tokens == 3 * MAX_TOKENS
    assert estimate.cost_usd == pytest.approx(bound(12, 0.1, 0.5, requests=3), rel=1e-9)


def test_a_fan_out_step_is_priced_at_half_in_batch_mode(tmp_path: Path) -> None:
    estimate = estimate_of(write_fan_out(tmp_path), "label")

    assert set(estimate.costs) == {"live", "batch", "cache_prompt", "batch+cache_prompt"}
    live, batch = estimate.costs["live"], estimate.costs["batch"]
    assert live is not None and batch is not None
    assert batch == pytest.approx(live / 2, rel=1e-9)
    # a prefix of 2 tokens is far below the 512 Haiku 5.5 caches: caching saves nothing
    assert estimate.costs["cache_prompt"] == pytest.approx(live, rel=1e-9)
    assert estimate.note is not None and "saves nothing" in estimate.note


def test_a_fan_out_step_set_to_batch_mode_is_estimated_at_batch_prices(tmp_path: Path) -> None:
    estimate = estimate_of(write_fan_out(tmp_path, "mode: batch"), "label")

    assert estimate.mode == "batch"
    assert estimate.cost_usd == estimate.costs["batch"]
    assert estimate.cost_usd == pytest.approx(bound(12, 0.1, 0.5, requests=3) / 2, rel=1e-9)


def test_a_fan_out_step_whose_items_are_cached_costs_only_the_rest(tmp_path: Path) -> None:
    run = write_fan_out(tmp_path)
    assert run.run(run_id="first").exit_code == 0
    run.input_path.write_text("\n".join((*ITEMS, "abcdefghij")) + "\n", encoding="utf-8")

    estimate = estimate_of(run, "label")

    assert estimate.items == 4
    assert estimate.cache == "3 of 4 cached"
    per_item = (3 + 4 + 5 + 6) / 4  # the mean over all the items; only the new one is paid
    assert estimate.cost_usd == pytest.approx(bound(per_item, 0.1, 0.5), rel=1e-9)


# The budget beside the estimate.


def test_without_a_budget_there_is_no_outlook(tmp_path: Path) -> None:
    assert preview(pipeline(tmp_path, CONFIG.replace("MODEL", HAIKU_5_5), "x" * 400)).budget is None


def test_the_outlook_sets_the_estimate_against_the_budget(tmp_path: Path) -> None:
    run = pipeline(tmp_path, CONFIG.replace("MODEL", HAIKU_5_5), "x" * 400)
    cost = bound(137, 0.1, 0.5)

    fits = preview(run, max_cost=0.01).budget
    passes = preview(run, max_cost=0.0005).budget

    assert fits is not None and passes is not None
    assert fits.limit_usd == 0.01 and fits.spent_usd is None
    assert fits.planned_usd == pytest.approx(cost, rel=1e-9)
    assert fits.left_usd == 0.01
    assert fits.fits and fits.unknown == 0
    assert not passes.fits
    assert passes.planned_usd == pytest.approx(cost, rel=1e-9)


def test_steps_of_unknown_cost_are_counted_apart_not_as_zero(tmp_path: Path) -> None:
    outlook = preview(pipeline(tmp_path, TWO_STEPS, "x" * 400), max_cost=1.0).budget

    assert outlook is not None
    assert outlook.unknown == 1  # "followup" cannot be estimated before "ask" runs
    assert outlook.planned_usd == pytest.approx(bound(137, 0.1, 0.5), rel=1e-9)
    assert outlook.fits
    assert "unknown" in outlook.summary


def test_an_unpriced_step_counts_as_unknown_in_the_outlook(tmp_path: Path) -> None:
    run = pipeline(tmp_path, CONFIG.replace("MODEL", UNPRICED), "x" * 400)

    outlook = preview(run, max_cost=1.0).budget

    assert outlook is not None
    assert (outlook.planned_usd, outlook.unknown) == (0.0, 1)


def test_a_resumed_run_sets_what_is_left_against_the_estimate(tmp_path: Path) -> None:
    run = pipeline(
        tmp_path,
        TWO_STEPS,
        "x" * 400,
        script=reply("done", input_tokens=100, output_tokens=20),
    )
    assert run.run(run_id="first", max_cost=0.01).exit_code == 0
    spent = 2 * (100 * 0.1 + 20 * 0.5) / 1e6  # both steps' replies

    outlook = preview_resume(
        "first",
        settings=run.settings,
        options=RunOptions(check_credentials=False, from_step="ask", no_cache=True),
    ).budget

    assert outlook is not None
    assert outlook.limit_usd == 0.01  # the run's --max-cost, kept in its state
    assert outlook.spent_usd == pytest.approx(spent, rel=1e-9)
    assert outlook.left_usd == pytest.approx(0.01 - spent, rel=1e-9)
    assert outlook.planned_usd == pytest.approx(bound(137, 0.1, 0.5), rel=1e-9)
    assert outlook.unknown == 1


def test_a_fan_out_item_above_the_tier_is_priced_at_the_dearer_tier(tmp_path: Path) -> None:
    big = "x" * (300_009 - len("Ticket: "))  # 100,003 tokens
    run = pipeline(tmp_path, FAN_OUT.replace("SETTINGS", ""), "\n".join([big, "a", "b", "c"]))

    estimate = estimate_of(run, "label")

    assert estimate.input_tokens == 100_003 + 3 * 3
    each_at_its_tier = bound(100_003, 0.5, 2.5) + bound(3 * 3, 0.1, 0.5, requests=3)
    assert estimate.cost_usd is not None
    assert estimate.cost_usd >= each_at_its_tier * (1 - 1e-9)  # $0.054, not the $0.012 shown
