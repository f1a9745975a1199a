"""Budgets: a run pauses (exit 3, reason budget) before a call that could take its LLM cost past
``budget.max_usd`` or ``--max-cost``, and ``resume --max-cost`` goes on from there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stepline.store.state import RunStatus, StepStatus, load_state
from tests.e2e.test_errors import assert_clean_error
from tests.fakes import FakeLLMServer, Reply
from tests.helpers import write

# claude-haiku-4-5: $1 input, $5 output per million tokens. Each reply below costs
# 1,000 x $1 + 1,000 x $5 = $0.006; the most a call could cost (its short prompt and a full
# 1,000-token reply) is a little over $0.005.
CONFIG = """
name: budgeted
BUDGET
llm: {model: claude-haiku-4-5, max_tokens: 1000, cache: {enabled: false}}
max_parallel_steps: 1  # one at a time: the call the budget refuses is the third one
steps:
  - {id: one, kind: llm, prompt: "One"}
  - {id: two, kind: llm, prompt: "Two"}
  - {id: three, kind: llm, prompt: "Three"}
"""

FAN_OUT = """
name: budgeted-items
llm: {model: claude-haiku-4-5, max_tokens: 1000, cache: {enabled: false}}
steps:
  - id: each
    kind: llm
    for_each: input.lines
    item_key: "{{ item }}"
    concurrency: 1
    prompt: "About {{ item }}"
"""


@pytest.fixture
def pricey(fake_llm: FakeLLMServer) -> FakeLLMServer:
    fake_llm.responder = lambda request: Reply(
        text=f"re: {request.prompt}", input_tokens=1000, output_tokens=1000
    )
    return fake_llm


def prompts(server: FakeLLMServer) -> list[str]:
    return [request.prompt for request in server.requests_for("/v1/messages")]


@pytest.mark.parametrize(
    ("budget", "flag"), [("", ["--max-cost", "0.015"]), ("budget: {max_usd: 0.015}", [])]
)
def test_a_run_pauses_before_the_call_that_could_pass_its_budget_and_resumes_with_more(
    cli, pricey: FakeLLMServer, tmp_path: Path, budget: str, flag: list[str]
):
    write(tmp_path / "in.txt", "x")
    write(tmp_path / "pipeline-config.yaml", CONFIG.replace("BUDGET", budget))

    paused = cli("run", "in.txt", "--run-id", "r", *flag)

    # one ($0.006 spent) and two ($0.012) fit; three could reach $0.017: it is not sent
    assert_clean_error(paused, 3, "the budget of $0.0150 would be passed")
    assert "Continue with: pipeline resume r --max-cost USD" in paused.output
    assert prompts(pricey) == ["One", "Two"]
    state = load_state(tmp_path / ".pipeline/r/state.json")
    assert state.status == RunStatus.PAUSED and state.pause_reason == "budget"
    assert [step.status for step in state.steps] == [
        StepStatus.COMPLETED,
        StepStatus.COMPLETED,
        StepStatus.PENDING,
    ]

    still = cli("resume", "r")  # the same budget: still no room
    assert still.exit_code == 3 and prompts(pricey) == ["One", "Two"]

    resumed = cli("resume", "r", "--max-cost", "0.05")

    assert resumed.exit_code == 0, resumed.output
    assert prompts(pricey) == ["One", "Two", "Three"]
    assert load_state(tmp_path / ".pipeline/r/state.json").max_cost_usd == 0.05


def test_a_fan_out_stops_launching_items_at_the_budget_and_resume_asks_only_the_rest(
    cli, pricey: FakeLLMServer, tmp_path: Path
):
    write(tmp_path / "in.txt", "\n".join(f"n{number}" for number in range(8)) + "\n")
    write(tmp_path / "pipeline-config.yaml", FAN_OUT)

    paused = cli("run", "in.txt", "--run-id", "r", "--max-cost", "0.02")

    assert paused.exit_code == 3, paused.output
    assert prompts(pricey) == ["About n0", "About n1", "About n2"]  # $0.018 spent; n3 won't fit
    state = load_state(tmp_path / ".pipeline/r/state.json")
    assert state.pause_reason == "budget" and state.steps[0].status == StepStatus.PENDING

    resumed = cli("resume", "r", "--max-cost", "1")

    assert resumed.exit_code == 0, resumed.output
    assert prompts(pricey) == [f"About n{number}" for number in range(8)]  # none asked twice
    assert "cut short" not in resumed.output  # the refused item's call was never sent
    output = json.loads((tmp_path / ".pipeline/r/steps/01-each.json").read_text())
    assert output == [f"re: About n{number}" for number in range(8)]


def test_replies_from_the_cache_cost_nothing_against_the_budget(
    cli, pricey: FakeLLMServer, tmp_path: Path
):
    write(tmp_path / "in.txt", "x")
    config = CONFIG.replace("BUDGET", "").replace("cache: {enabled: false}", "cache: {}")
    write(tmp_path / "pipeline-config.yaml", config)
    assert cli("run", "in.txt", "--run-id", "first").exit_code == 0

    again = cli("run", "in.txt", "--run-id", "second", "--max-cost", "0.001")

    assert again.exit_code == 0, again.output  # every reply cached: nothing to pay for
    assert len(prompts(pricey)) == 3


def test_a_budget_of_nothing_is_refused_in_the_config(cli, tmp_path: Path):
    write(tmp_path / "in.txt", "x")
    write(tmp_path / "pipeline-config.yaml", CONFIG.replace("BUDGET", "budget: {max_usd: 0}"))

    assert_clean_error(cli("validate"), 2, "budget.max_usd")


CHAIN = """
name: budgeted-chain
llm: {model: claude-haiku-4-5, max_tokens: 1000, cache: {enabled: false}}
steps:
  - id: first
    kind: llm
    for_each: input.lines
    item_key: "{{ item }}"
    concurrency: 1
    prompt: "About {{ item }}"
  - id: second
    kind: llm
    for_each: "{{ steps.first }}"
    stream_items: true
    concurrency: 1
    prompt: "Then {{ item }}"
"""


def test_a_budget_stop_inside_a_streaming_chain_leaves_both_steps_pending(
    cli, pricey: FakeLLMServer, tmp_path: Path
):
    write(tmp_path / "in.txt", "a\nb\nc\n")
    write(tmp_path / "pipeline-config.yaml", CHAIN)

    paused = cli("run", "in.txt", "--run-id", "r", "--max-cost", "0.02")

    assert paused.exit_code == 3, paused.output
    state = load_state(tmp_path / ".pipeline/r/state.json")
    assert state.pause_reason == "budget"
    assert [step.status for step in state.steps] == [StepStatus.PENDING, StepStatus.PENDING]
    asked = prompts(pricey)
    resumed = cli("resume", "r", "--max-cost", "1")
    assert resumed.exit_code == 0, resumed.output
    assert len(prompts(pricey)) == 6  # each of the six calls once, none asked twice
    assert sorted(prompts(pricey)) == sorted(set(prompts(pricey)))
    assert asked == prompts(pricey)[: len(asked)]
