"""--dry-run prices each LLM step live, in batch mode and with prompt caching side by side, marks
the mode the step is set to use, and sets the total against the run's budget.

The figures are checked against hand arithmetic with the heuristic token count (no key: about 4
characters per token, rounded up per request) and the shipped prices of claude-haiku-4-5: $1
input, $5 output, $1.25 cache write, $0.10 cache read per million tokens; batch prices are half;
the model caches prefixes of 4,096 tokens or more.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fakes import FakeLLMServer, Reply
from tests.helpers import write

PREFIX_TOKENS = 4_096  # claude-haiku-4-5's cache_min_tokens
PROMPT = "Ticket: "  # the shared start of the prompt, 8 characters (2 tokens)
ITEMS = ("abcd", "abcdefgh", "abcdefghijkl")  # 1, 2 and 3 tokens of their own
MAX_TOKENS = 100

FAN_OUT = """
name: costs
llm: {model: claude-haiku-4-5, max_tokens: 100}
steps:
  - id: label
    kind: llm
    for_each: input.lines
    SETTINGS
    system: SYSTEM
    prompt: "Ticket: {{ item }}"
"""


def system_prompt(prefix_tokens: int) -> str:
    """A system prompt that, with the prompt's shared start, makes ``prefix_tokens``."""
    return "s" * (prefix_tokens * 4 - len(PROMPT))


def write_fan_out(folder: Path, *, prefix_tokens: int = PREFIX_TOKENS, settings: str = "") -> None:
    write(folder / "tickets.txt", "\n".join(ITEMS) + "\n")
    config = FAN_OUT.replace("SYSTEM", json.dumps(system_prompt(prefix_tokens)))
    write(folder / "pipeline-config.yaml", config.replace("SETTINGS", settings or "label: Label"))


def dry_run(cli, *args: str) -> dict:
    result = cli("run", "tickets.txt", "--dry-run", "--json", *args)
    assert result.exit_code == 0, result.output
    return {entry["step"]: entry for entry in json.loads(result.stdout)["llm"]}


def terminal(cli, *args: str) -> str:
    """The dry run's tables and lines, one space between words (the table may wrap)."""
    result = cli("run", "tickets.txt", "--dry-run", *args)
    assert result.exit_code == 0, result.output
    return " ".join(result.stdout.split())


def hand_costs(prefix: int) -> dict[str, float]:
    """The four figures for the three items, ``prefix`` tokens of each being cached."""
    per_item = [prefix + len(item) // 4 for item in ITEMS]  # heuristic tokens of each request
    output = len(ITEMS) * MAX_TOKENS * 5.0
    live = (sum(per_item) * 1.0 + output) / 1e6
    if prefix < PREFIX_TOKENS:
        cached, batch_cached = live, live / 2
    else:  # the first item writes the prefix, the other two read it; the rest is plain input
        plain = sum(tokens - prefix for tokens in per_item)
        cached = (prefix * 1.25 + 2 * prefix * 0.10 + plain * 1.0 + output) / 1e6
        # with a batch, one (average) request goes live first and writes the one-hour cache
        # ($2 per million: 2 x input); the other two read it at batch prices (half)
        first = (plain / 3 * 1.0 + MAX_TOKENS * 5.0 + prefix * 2.0) / 1e6
        batch_cached = first + 2 * (plain / 3 * 0.5 + MAX_TOKENS * 2.5 + prefix * 0.05) / 1e6
    return {
        "live": live,
        "batch": live / 2,
        "cache_prompt": cached,
        "batch+cache_prompt": batch_cached,
    }


@pytest.fixture(autouse=True)
def no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The heuristic count, so the figures are exact (a provider's count is scaled instead)."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)


def test_a_fan_out_step_is_priced_live_in_batch_mode_and_with_prompt_caching(cli, tmp_path: Path):
    write_fan_out(tmp_path)

    label = dry_run(cli)["label"]

    expected = hand_costs(PREFIX_TOKENS)
    assert label["costs"] == pytest.approx(expected)
    assert label["costs"]["cache_prompt"] < label["costs"]["live"]
    assert label["mode"] == "live"  # neither mode: nor cache_prompt is set
    assert label["cost_usd"] == pytest.approx(expected["live"])
    text = terminal(cli)
    assert "Cost ≤ (every reply max_tokens long)" in text
    cells = [expected[mode] for mode in ("live", "batch", "cache_prompt", "batch+cache_prompt")]
    assert "│ label │ ▸ ${:.4f} │ ${:.4f} │ ${:.4f} │ ${:.4f} │".format(*cells) in text
    assert f"Total as configured (▸): ≤ ${expected['live']:.4f}" in text


def test_the_configured_mode_is_marked_and_the_total_uses_it(cli, tmp_path: Path):
    write_fan_out(tmp_path, settings="mode: batch\n    cache_prompt: true")

    label = dry_run(cli)["label"]

    expected = hand_costs(PREFIX_TOKENS)
    assert label["mode"] == "batch+cache_prompt"
    assert label["cost_usd"] == pytest.approx(expected["batch+cache_prompt"])
    text = terminal(cli)
    assert f"│ ${expected['cache_prompt']:.4f} │ ▸ ${expected['batch+cache_prompt']:.4f} │" in text
    assert f"▸ ${expected['live']:.4f}" not in text
    assert f"Total as configured (▸): ≤ ${expected['batch+cache_prompt']:.4f}" in text


def test_the_batch_flag_sets_the_mode_of_fan_out_steps(cli, tmp_path: Path):
    write_fan_out(tmp_path)

    label = dry_run(cli, "--batch")["label"]

    assert label["mode"] == "batch"
    assert label["cost_usd"] == pytest.approx(hand_costs(PREFIX_TOKENS)["batch"])


def test_a_prefix_below_the_models_minimum_caches_nothing(cli, tmp_path: Path):
    write_fan_out(tmp_path, prefix_tokens=PREFIX_TOKENS - 1, settings="cache_prompt: true")

    label = dry_run(cli)["label"]

    costs = label["costs"]
    assert costs["cache_prompt"] == pytest.approx(costs["live"])
    assert costs["batch+cache_prompt"] == pytest.approx(costs["batch"])
    assert costs == pytest.approx(hand_costs(PREFIX_TOKENS - 1))
    assert label["mode"] == "cache_prompt"
    assert (
        "cache_prompt saves nothing: the shared prefix is ~4,095 tokens, below the 4,096 that "
        "claude-haiku-4-5 caches" in label["note"]
    )


def test_a_pricing_override_sets_the_cache_minimum_and_the_cache_prices(cli, tmp_path: Path):
    write_fan_out(tmp_path, prefix_tokens=10)
    config = tmp_path / "pipeline-config.yaml"
    override = (
        "pricing:\n  claude-haiku-4-5: {input: 2, output: 10, cache_write: 3, cache_read: 0.5, "
        "cache_min_tokens: 10}\n"
    )
    config.write_text(override + config.read_text())

    costs = dry_run(cli)["label"]["costs"]

    # items of 11, 12 and 13 tokens; the first writes 10, the others read them
    live = ((11 + 12 + 13) * 2.0 + 3 * MAX_TOKENS * 10.0) / 1e6
    cached = (10 * 3.0 + 2 * 10 * 0.5 + (1 + 2 + 3) * 2.0 + 3 * MAX_TOKENS * 10.0) / 1e6
    # with a batch one (average) request goes live and writes the one-hour cache
    # (cache_write_1h defaults to 2 x input = $4); the other two read it at half price
    first = (10 * 4.0 + 2 * 2.0 + MAX_TOKENS * 10.0) / 1e6
    rest = 2 * (10 * 0.5 + 2 * 2.0 + MAX_TOKENS * 10.0) / 2e6
    assert costs == pytest.approx(
        {
            "live": live,
            "batch": live / 2,
            "cache_prompt": cached,
            "batch+cache_prompt": first + rest,
        }
    )


LOCAL = """
  - id: local
    kind: llm
    provider: openai
    base_url: http://127.0.0.1:9/v1
    for_each: input.lines
    prompt: "Label: {{ item }}"
"""
MIXED = (
    """
name: mixed
llm: {model: claude-haiku-4-5, max_tokens: 100}
steps:
  - id: summary
    kind: llm
    prompt: "Summarise: {{ input.text }}"
  - id: label
    kind: llm
    for_each: input.lines
    prompt: "Ticket: {{ item }}"
"""
    + LOCAL
)


def test_batch_applies_only_to_anthropic_fan_out_steps_and_caching_only_to_anthropic(
    cli, tmp_path: Path
):
    write(tmp_path / "tickets.txt", "abcd\nefgh\n")
    write(tmp_path / "pipeline-config.yaml", MIXED)

    llm = dry_run(cli)

    summary, label, local = llm["summary"], llm["label"], llm["local"]
    assert set(label["costs"]) == {"live", "batch", "cache_prompt", "batch+cache_prompt"}
    assert set(summary["costs"]) == {"live", "cache_prompt"}  # one request: nothing to batch
    assert set(local["costs"]) == {"live"}  # an OpenAI-compatible server: live only
    assert summary["mode"] == local["mode"] == "live"
    tokens = -(-len("Summarise: abcd\nefgh\n") // 4)
    live = (tokens * 1.0 + MAX_TOKENS * 5.0) / 1e6
    assert summary["costs"]["live"] == pytest.approx(live)
    # below the minimum: caching the whole (short) prompt saves nothing
    assert summary["costs"]["cache_prompt"] == pytest.approx(live)
    text = terminal(cli)
    assert f"│ summary │ ▸ ${live:.4f} │ - │ ${live:.4f} │ - │" in text
    assert f"│ local │ ▸ ${local['cost_usd']:.4f} │ - │ - │ - │" in text
    assert "- does not apply" in text
    total = summary["cost_usd"] + label["cost_usd"] + local["cost_usd"]
    batch_total = summary["cost_usd"] + label["costs"]["batch"] + local["cost_usd"]
    assert f"│ total │ ${total:.4f} │ ${batch_total:.4f} │" in text


def test_with_only_live_steps_the_cost_stays_a_column_of_the_steps_table(cli, tmp_path: Path):
    write(tmp_path / "tickets.txt", "abcd\n")
    write(tmp_path / "pipeline-config.yaml", "name: local\nllm: {model: m}\nsteps:" + LOCAL)

    text = terminal(cli)

    assert "cost ≤" in text and "batch" not in text and "▸" not in text
    assert "│ unpriced │" in text  # model m has no price
    assert "Total: ≤ $0.0000 + 1 step of unknown cost" in text


def write_budgeted(folder: Path, budget: str) -> None:
    write_fan_out(folder, settings="mode: batch")
    config = folder / "pipeline-config.yaml"
    config.write_text(f"budget: {{max_usd: {budget}}}\n" + config.read_text())


def test_the_budget_line_says_whether_the_estimate_fits(cli, tmp_path: Path):
    batch = hand_costs(PREFIX_TOKENS)["batch"]
    write_budgeted(tmp_path, f"{batch + 0.0001:.4f}")

    text = terminal(cli)

    left = float(f"{batch + 0.0001:.4f}")
    assert f"Budget ${left:.4f}: the estimate fits." in text  # a new run has spent nothing

    text = terminal(cli, "--max-cost", "0.001")  # --max-cost wins over budget:
    over = batch - 0.001
    assert f"Budget $0.0010: the estimate passes it by ${over:.4f}; " in text
    assert "the run may pause at the budget (exit 3)" in text

    result = cli("run", "tickets.txt", "--dry-run", "--json", "--max-cost", "0.001")
    budget = json.loads(result.stdout)["budget"]
    assert (budget["limit_usd"], budget["spent_usd"], budget["fits"]) == (0.001, None, False)
    assert budget["planned_usd"] == pytest.approx(batch) and budget["unknown"] == 0


def test_a_resumed_run_sets_what_it_has_spent_against_the_budget(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-costs")
    fake_llm.responder = lambda request: Reply(text="ok", input_tokens=1000, output_tokens=200)
    write_fan_out(tmp_path)
    config = tmp_path / "pipeline-config.yaml"
    config.write_text("budget: {max_usd: 1}\n" + config.read_text())
    assert cli("run", "tickets.txt", "--run-id", "r").exit_code == 0
    spent = 3 * (1000 * 1.0 + 200 * 5.0) / 1e6  # three calls, live

    # --fresh-items: the items are sent again (else the checkpoints answer them, for free)
    result = cli("resume", "r", "--from-step", "label", "--fresh-items", "--no-cache", "--dry-run")

    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert f"Budget $1.0000, ${spent:.4f} spent so far, ${1 - spent:.4f} left: " in text
    assert "the estimate fits" in text

    result = cli(
        *("resume", "r", "--from-step", "label", "--fresh-items", "--no-cache", "--dry-run"),
        *("--max-cost", "0.007"),
    )

    text = " ".join(result.stdout.split())
    assert f"Budget $0.0070, ${spent:.4f} spent so far, ${0.007 - spent:.4f} left: " in text
    assert "the estimate passes it by $" in text
