"""--dry-run's LLM outlook (cache status, token and cost estimates) and the context-window check."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path

import pytest

from tests.e2e.test_errors import assert_clean_error
from tests.fakes import FakeLLMServer, Reply
from tests.fakes.llm_server import (
    ANTHROPIC_COUNT_TOKENS_PATH,
    ANTHROPIC_MESSAGES_PATH,
    counted_tokens,
)
from tests.helpers import write

CONFIG = """
name: estimated
llm:
  model: claude-haiku-4-5
  max_tokens: 1000
  CACHE
PRICING
steps:
  - id: ask
    kind: llm
    prompt: "Summarise: {{ input.text }}"
  - id: followup
    kind: llm
    prompt: "Refine: {{ steps.ask }}"
"""


@pytest.fixture
def pipeline(tmp_path: Path, fake_llm: FakeLLMServer):
    def make(cache: str = "", pricing: str = "", text: str = "x" * 400) -> Path:
        write(tmp_path / "in.txt", text)
        fake_llm.responder = lambda request: Reply(text="done", input_tokens=7, output_tokens=3)
        config = CONFIG.replace("CACHE", cache).replace("PRICING", pricing)
        return write(tmp_path / "pipeline-config.yaml", config)

    return make


def dry_run(cli, *args: str) -> dict:
    result = cli("run", "in.txt", "--dry-run", "--json", *args)
    assert result.exit_code == 0, result.output
    return {entry["step"]: entry for entry in json.loads(result.stdout)["llm"]}


def test_dry_run_counts_tokens_with_the_provider_and_bounds_the_cost(
    cli, fake_llm: FakeLLMServer, pipeline, tmp_path: Path
):
    pipeline()

    llm = dry_run(cli)

    ask = llm["ask"]
    counted = fake_llm.requests_for(ANTHROPIC_COUNT_TOKENS_PATH)
    assert [request.prompt for request in counted] == ["Summarise: " + "x" * 400]
    assert ask["input_tokens"] == counted_tokens(counted[0].body) == 5
    assert ask["method"] == "counted by the provider"
    assert ask["cache"] == "miss (no entry)"
    # claude-haiku-4-5: $1 input, $5 output per million tokens; a full 1000-token reply.
    assert ask["cost_usd"] == pytest.approx((ask["input_tokens"] * 1.0 + 1000 * 5.0) / 1e6)
    assert llm["followup"]["input_tokens"] is None
    assert 'needs the output of step "ask"' in llm["followup"]["note"]
    assert not (tmp_path / ".pipeline").exists(), "a dry run writes nothing"
    assert fake_llm.count(ANTHROPIC_MESSAGES_PATH) == 0


def test_without_a_key_the_estimate_is_a_labelled_heuristic(
    cli, fake_llm: FakeLLMServer, pipeline, monkeypatch: pytest.MonkeyPatch
):
    pipeline()
    monkeypatch.delenv("ANTHROPIC_API_KEY")

    result = cli("run", "in.txt", "--dry-run", "--json")

    ask = json.loads(result.stdout)["llm"][0]
    assert ask["input_tokens"] == -(-(len("Summarise: ") + 400) // 4)
    assert ask["method"] == "heuristic (~3-4 characters per token, by model)"
    assert fake_llm.count() == 0
    assert "ANTHROPIC_API_KEY is not set" in json.loads(result.stdout)["warnings"][0]


def test_dry_run_sees_a_cache_hit_and_prices_it_at_zero(cli, fake_llm: FakeLLMServer, pipeline):
    pipeline()
    assert cli("run", "in.txt", "--run-id", "first").exit_code == 0

    llm = dry_run(cli)

    assert llm["ask"]["cache"] == "hit"
    assert llm["ask"]["cost_usd"] == 0


def test_resume_dry_run_renders_prompts_from_reused_outputs(cli, pipeline):
    pipeline()
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0

    result = cli("resume", "r", "--from-step", "followup", "--dry-run", "--json")

    llm = {entry["step"]: entry for entry in json.loads(result.stdout)["llm"]}
    assert list(llm) == ["followup"]
    assert llm["followup"]["input_tokens"] == 2 + 3  # the fake counts words, +3 per message
    assert llm["followup"]["cache"] == "hit"


def test_dry_run_says_why_the_cache_misses(cli, pipeline, tmp_path: Path):
    pipeline(cache="cache: {ttl: 1h}")
    assert cli("run", "in.txt", "--run-id", "first").exit_code == 0

    write(tmp_path / "in.txt", "different notes")
    assert dry_run(cli)["ask"]["cache"] == "miss (key changed)"

    write(tmp_path / "in.txt", "x" * 400)
    db = sqlite3.connect(tmp_path / ".pipeline" / "cache.sqlite")
    with db:
        db.execute("UPDATE responses SET created_at = ?", (time.time() - 7200,))
    db.close()
    assert dry_run(cli)["ask"]["cache"] == "miss (expired)"


def test_dry_run_table_in_the_terminal(cli, pipeline):
    pipeline()

    result = cli("run", "in.txt", "--dry-run")

    assert result.exit_code == 0
    assert "LLM steps" in result.stdout and "miss (no entry)" in result.stdout
    counted_cell = re.search(r"│\s+5\s+│", result.stdout)
    assert counted_cell is not None and "counted by the provider" in result.stdout
    assert "~5" not in result.stdout, "a provider's count is not marked as approximate"


def test_dry_run_with_a_cassette_says_whether_the_request_is_recorded(
    cli, pipeline, tmp_path: Path
):
    pipeline()
    assert cli("run", "in.txt", "--record", "tape.jsonl").exit_code == 0

    llm = dry_run(cli, "--replay", "tape.jsonl")
    assert llm["ask"]["cache"] == "replay (recorded)"

    write(tmp_path / "in.txt", "other")
    assert dry_run(cli, "--replay", "tape.jsonl")["ask"]["cache"] == "replay (not recorded)"


def test_prompt_larger_than_the_context_window_fails_before_sending(
    cli, fake_llm: FakeLLMServer, pipeline, tmp_path: Path
):
    small_window = "pricing:\n  tiny-model: {input: 1, output: 1, context_window: 100}"
    pipeline(pricing=small_window, text="word " * 200)
    config = tmp_path / "pipeline-config.yaml"
    config.write_text(config.read_text().replace("claude-haiku-4-5", "tiny-model"))

    result = cli("run", "in.txt", "--run-id", "big")

    assert_clean_error(
        result, 1, 'step "ask"', "too large for tiny-model", "context window is 100 tokens"
    )
    assert fake_llm.count() == 0
    state = json.loads((tmp_path / ".pipeline/big/state.json").read_text())
    assert state["status"] == "failed"


def test_prompt_that_fits_is_sent(cli, fake_llm: FakeLLMServer, pipeline, tmp_path: Path):
    roomy = "pricing:\n  tiny-model: {input: 1, output: 1, context_window: 1000}"
    pipeline(pricing=roomy, text="word " * 200)
    config = tmp_path / "pipeline-config.yaml"
    config.write_text(config.read_text().replace("claude-haiku-4-5", "tiny-model"))

    assert cli("run", "in.txt").exit_code == 0
    assert fake_llm.count() == 2


def test_an_old_cache_file_is_migrated_and_kept(cli, fake_llm: FakeLLMServer, pipeline, tmp_path):
    pipeline()
    (tmp_path / ".pipeline").mkdir()
    db = sqlite3.connect(tmp_path / ".pipeline" / "cache.sqlite")
    db.execute(
        "CREATE TABLE responses (key TEXT PRIMARY KEY, model TEXT NOT NULL, "
        "completion TEXT NOT NULL, created_at REAL NOT NULL)"
    )
    db.execute("CREATE INDEX responses_created_at ON responses (created_at)")
    db.execute("INSERT INTO responses VALUES ('k', 'm', '{\"text\": \"old\"}', 0)")
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()

    assert cli("run", "in.txt").exit_code == 0

    db = sqlite3.connect(tmp_path / ".pipeline" / "cache.sqlite")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 4
    assert db.execute("SELECT COUNT(*) FROM responses WHERE key = 'k'").fetchone()[0] == 1
    labels = {row[0] for row in db.execute("SELECT label FROM responses WHERE key != 'k'")}
    assert labels == {"estimated/ask", "estimated/followup"}


def test_dry_run_with_no_cache_says_the_cache_is_skipped(cli, pipeline):
    pipeline()
    assert cli("run", "in.txt").exit_code == 0

    llm = dry_run(cli, "--no-cache")

    assert llm["ask"]["cache"] == "skipped (--no-cache)"
    assert llm["ask"]["cost_usd"] > 0


def test_prompt_too_large_for_the_primary_goes_to_a_larger_fallback(
    cli, fake_llm: FakeLLMServer, pipeline, tmp_path: Path
):
    windows = (
        "pricing:\n  tiny-model: {input: 1, output: 1, context_window: 100}\n"
        "  roomy-model: {input: 1, output: 1, context_window: 100000}"
    )
    pipeline(cache="fallback_models: [roomy-model]", pricing=windows, text="word " * 200)
    config = tmp_path / "pipeline-config.yaml"
    config.write_text(config.read_text().replace("claude-haiku-4-5", "tiny-model"))

    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    models = [request.model for request in fake_llm.requests_for(ANTHROPIC_MESSAGES_PATH)]
    assert models == ["roomy-model", "tiny-model"]  # the short follow-up fits the primary
    assert "too large for tiny-model" in result.output and "falling back to roomy-model" in (
        result.output
    )


FAN_OUT = """
name: fan
llm: {model: claude-haiku-4-5, max_tokens: 100}
steps:
  - id: ask
    kind: llm
    for_each: input.lines
    prompt: "About {{ item }}"
"""


def test_dry_run_estimates_a_fan_out_step_from_its_items(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("ANTHROPIC_API_KEY")  # the heuristic, so the figures are exact
    write(tmp_path / "in.txt", "apples\nkiwis\n\nbananas and cherries\n")
    write(tmp_path / "pipeline-config.yaml", FAN_OUT)

    ask = dry_run(cli)["ask"]

    per_item = [
        -(-len(f"About {line}") // 4) for line in ("apples", "kiwis", "bananas and cherries")
    ]
    assert ask["items"] == 3  # blank lines are not items
    assert ask["input_tokens"] == round(sum(per_item) / 3 * 3)
    assert ask["max_output_tokens"] == 300
    assert ask["cache"] == "0 of 3 cached"
    # claude-haiku-4-5: $1 input, $5 output per million tokens, every item a full reply.
    assert ask["cost_usd"] == pytest.approx(3 * (sum(per_item) / 3 * 1.0 + 100 * 5.0) / 1e6)
    assert "3 items" in ask["note"]
    assert fake_llm.count() == 0
    assert not (tmp_path / ".pipeline").exists(), "a dry run writes nothing"


def test_dry_run_prices_only_the_items_the_cache_does_not_answer(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    fake_llm.responder = lambda request: Reply(text="ok")
    write(tmp_path / "in.txt", "apples\nkiwis\n")
    write(tmp_path / "pipeline-config.yaml", FAN_OUT)
    assert cli("run", "in.txt").exit_code == 0
    write(tmp_path / "in.txt", "apples\nkiwis\nplums\n")

    ask = dry_run(cli)["ask"]

    assert ask["cache"] == "2 of 3 cached"
    one_item = (ask["input_tokens"] / 3 * 1.0 + 100 * 5.0) / 1e6
    assert ask["cost_usd"] == pytest.approx(one_item)


def test_dry_run_of_a_fan_out_step_says_what_it_cannot_know_yet(cli, tmp_path: Path):
    write(tmp_path / "in.txt", "a\nb\n")
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: fan
        llm: {model: claude-haiku-4-5}
        steps:
          - {id: split, kind: python, function: "helpers:split"}
          - id: ask
            kind: llm
            for_each: "{{ steps.split }}"
            prompt: "About {{ item }}"
          - id: again
            kind: llm
            for_each: input.lines
            item_key: "same"
            prompt: "About {{ item }}"
        """,
    )
    write(tmp_path / "helpers.py", "def split(ctx):\n    return ctx.input.text.split()\n")

    result = cli("run", "in.txt", "--dry-run")

    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert 'ask: the items or the prompt need the output of step "split", which runs first' in (
        text
    )
    assert 'again: the items cannot be read: duplicate item keys: "same"' in text
