"""The runner, driven in-process: steps in order, retries inside a step, failures, resume,
``--from-step``, step timeouts, the budget and the run's totals, on a mock clock with a
scripted provider (no HTTP, no subprocess). The CLI's side of the same contracts is in
tests/e2e (test_run, test_resume, test_budget, test_errors)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepline.engine.events import EventType
from stepline.errors import ProviderRequestError
from stepline.store.state import RunStatus, StepStatus
from tests.fakes.scripted import ScriptedProvider, by_prompt, rate_limited, reply
from tests.inprocess import InProcess

# One step at a time, in list order ("three" waits for nothing): these tests are about what
# happens inside a step and between steps; tests/unit/test_scheduler.py runs steps at once.
THREE_STEPS = """
name: three
max_parallel_steps: 1
llm: {model: claude-haiku-4-5, max_tokens: 1000, cache: {enabled: false}, retry: RETRY}
steps:
  - {id: one, kind: llm, prompt: "One {{ input.text }}"}
  - {id: two, kind: llm, prompt: "Two {{ steps.one }}", critical: CRITICAL}
  - {id: three, kind: llm, prompt: "Three"}
"""


def three_steps(folder: Path, provider: ScriptedProvider, *, critical: bool = True) -> InProcess:
    config = THREE_STEPS.replace("CRITICAL", str(critical).lower()).replace(
        "RETRY", "{attempts: 3, initial_delay: 1s}"
    )
    return InProcess(folder, config, "x", provider=provider)


def refused() -> ProviderRequestError:
    """A 400: not retried, no fallback."""
    return ProviderRequestError("anthropic: 400 invalid_request_error: bad two", status_code=400)


def test_steps_run_in_order_each_output_on_disk_and_the_state_completed(tmp_path: Path) -> None:
    harness = InProcess(
        tmp_path,
        """
        name: mixed
        llm: {model: claude-haiku-4-5, max_tokens: 100, cache: {enabled: false}}
        steps:
          - {id: ask, kind: llm, prompt: "Name three fruits in {{ input.text }}"}
          - {id: count, kind: python, function: "runner_helpers:count_words"}
          - {id: again, kind: llm, prompt: "Words: {{ steps.count.words }}"}
        """,
        "French",
        provider=ScriptedProvider(script=by_prompt({"Name": reply("apple pear fig")})),
    )
    harness.write(
        "runner_helpers.py",
        """
        def count_words(ctx):
            return {"words": len(ctx.steps["ask"].split())}
        """,
    )

    result = harness.run(run_id="r")

    assert (result.status, result.exit_code, result.message) == (RunStatus.COMPLETED, 0, None)
    assert harness.provider.prompts == ["Name three fruits in French", "Words: 3"]
    state = harness.state("r")
    assert state.status == RunStatus.COMPLETED and state.error is None
    assert [(s.id, s.status, s.output, s.attempts) for s in state.steps] == [
        ("ask", StepStatus.COMPLETED, "steps/01-ask.json", 1),
        ("count", StepStatus.COMPLETED, "steps/02-count.json", 1),
        ("again", StepStatus.COMPLETED, "steps/03-again.json", 1),
    ]
    assert harness.output_file("r", "steps/01-ask.json") == "apple pear fig"
    assert harness.output_file("r", "steps/02-count.json") == {"words": 3}
    assert harness.output_file("r", "steps/03-again.json") == "echo: Words: 3"
    assert state.steps[1].reads == {"ask": state.steps[0].output_hash, "@input": state.input_hash}
    started = [e.step for e in harness.of_type(EventType.STEP_STARTED)]
    completed = [e.step for e in harness.of_type(EventType.STEP_COMPLETED)]
    assert started == completed == ["ask", "count", "again"]
    assert harness.events[-1].type is EventType.RUN_COMPLETED
    assert harness.clock.now == 0.0  # nothing waited


def test_a_retryable_failure_is_retried_inside_the_step_and_each_attempt_recorded(
    tmp_path: Path,
) -> None:
    provider = ScriptedProvider().then(rate_limited(retry_after=2.5), reply("first"))
    harness = three_steps(tmp_path, provider)

    result = harness.run(run_id="r")

    assert result.status == RunStatus.COMPLETED
    # the 429 asked for 2.5 s: the second attempt goes out exactly then
    assert provider.prompts[:2] == ["One x", "One x"]
    assert provider.times == [0.0, 2.5, 2.5, 2.5]
    calls = harness.calls("r")
    assert [(c["step"], c["attempt"], c["outcome"], c["status_code"]) for c in calls] == [
        ("one", 1, "error", 429),
        ("one", 2, "ok", None),
        ("two", 1, "ok", None),
        ("three", 1, "ok", None),
    ]
    state = harness.state("r")
    assert state.steps[0].metrics["attempts"] == 2
    assert state.steps[0].attempts == 1  # the step ran once; its call took two requests
    assert harness.output_file("r", "steps/01-one.json") == "first"
    retries = [e.message for e in harness.of_type(EventType.LOG) if e.step == "one"]
    assert retries == ["claude-haiku-4-5 attempt 1 failed (429); retrying in 2.50s"]


def test_a_critical_step_that_fails_ends_the_run_failed_and_keeps_the_completed_steps(
    tmp_path: Path,
) -> None:
    provider = ScriptedProvider(script=by_prompt({"Two": refused()}))
    harness = three_steps(tmp_path, provider)

    result = harness.run(run_id="r")

    assert (result.status, result.exit_code) == (RunStatus.FAILED, 1)
    assert provider.prompts == ["One x", "Two echo: One x"]  # three never ran
    state = harness.state("r")
    assert state.status == RunStatus.FAILED
    failure = 'step "two": anthropic: 400 invalid_request_error: bad two'
    assert state.error == result.message == state.steps[1].error == failure
    assert [s.status for s in state.steps] == [
        StepStatus.COMPLETED,
        StepStatus.FAILED,
        StepStatus.PENDING,
    ]
    assert state.steps[1].output is None
    assert harness.output_file("r", "steps/01-one.json") == "echo: One x"
    assert [c["outcome"] for c in harness.calls("r")] == ["ok", "error"]  # a 400 is not retried
    assert harness.events[-1].type is EventType.RUN_FAILED


def test_a_non_critical_failure_is_recorded_and_the_run_completes(tmp_path: Path) -> None:
    provider = ScriptedProvider(script=by_prompt({"Two": refused()}))
    harness = three_steps(tmp_path, provider, critical=False)

    result = harness.run(run_id="r")

    assert (result.status, result.exit_code) == (RunStatus.COMPLETED, 0)
    assert provider.prompts == ["One x", "Two echo: One x", "Three"]
    assert [s.status for s in harness.state("r").steps] == [
        StepStatus.COMPLETED,
        StepStatus.FAILED,
        StepStatus.COMPLETED,
    ]


def test_resume_reuses_the_completed_steps_without_asking_the_provider_again(
    tmp_path: Path,
) -> None:
    provider = ScriptedProvider(script=by_prompt({"Two": refused()}))
    harness = three_steps(tmp_path, provider)
    assert harness.run(run_id="r").status == RunStatus.FAILED
    asked_before = len(provider.received)
    provider.script = by_prompt({})  # the cause is fixed

    result = harness.resume("r")

    assert result.status == RunStatus.COMPLETED
    assert provider.prompts[asked_before:] == ["Two echo: One x", "Three"]  # not "One x"
    assert [e.step for e in harness.of_type(EventType.STEP_REUSED)] == ["one"]
    state = harness.state("r")
    assert [(s.status, s.attempts) for s in state.steps] == [
        (StepStatus.COMPLETED, 1),
        (StepStatus.COMPLETED, 2),
        (StepStatus.COMPLETED, 1),
    ]
    assert result.outputs == {
        "one": "echo: One x",
        "two": "echo: Two echo: One x",
        "three": "echo: Three",
    }

    again = harness.resume("r")  # nothing left to do: no request at all

    assert again.status == RunStatus.COMPLETED
    assert len(provider.received) == asked_before + 2


@pytest.mark.parametrize("selector", ["two", "2"])
def test_from_step_reruns_that_step_and_the_steps_that_wait_for_it(
    tmp_path: Path, selector: str
) -> None:
    provider = ScriptedProvider()
    harness = three_steps(tmp_path, provider)
    assert harness.run(run_id="r").status == RunStatus.COMPLETED
    assert len(provider.received) == 3

    result = harness.resume("r", from_step=selector)

    assert result.status == RunStatus.COMPLETED
    # "three" reads neither "two" nor anything after it: it is reused, not asked again
    assert provider.prompts[3:] == ["Two echo: One x"]
    assert [d.action.value for d in result.decisions] == ["reuse", "run", "reuse"]
    assert [s.attempts for s in harness.state("r").steps] == [1, 2, 1]


def test_a_step_timeout_fails_the_step_at_exactly_that_time(tmp_path: Path) -> None:
    harness = InProcess(
        tmp_path,
        """
        name: slow
        steps:
          - {id: quick, kind: python, function: "timeout_helpers:quick"}
          - {id: nap, kind: python, function: "timeout_helpers:nap", timeout: 90s}
          - {id: after, kind: python, function: "timeout_helpers:quick"}
        """,
    )
    harness.write(
        "timeout_helpers.py",
        """
        import asyncio

        async def quick(ctx):
            await asyncio.sleep(5)
            return "quick"

        async def nap(ctx):
            await asyncio.sleep(3600)
            return "never"
        """,
    )

    result = harness.run(run_id="r")

    assert (result.status, result.exit_code) == (RunStatus.FAILED, 1)
    assert result.message == 'step "nap": timed out after 1m30s'
    assert harness.clock.now == 5.0 + 90.0  # the first step's 5 s, then the timeout
    steps = harness.state("r").steps
    assert [(s.status, s.duration_s) for s in steps] == [
        (StepStatus.COMPLETED, 5.0),
        (StepStatus.FAILED, 90.0),
        (StepStatus.PENDING, None),
    ]


def test_an_llm_step_timeout_limits_each_request_and_the_timed_out_attempt_is_recorded(
    tmp_path: Path,
) -> None:
    provider = ScriptedProvider(latency=45.0)
    harness = InProcess(
        tmp_path,
        """
        name: slow-model
        llm: {model: claude-haiku-4-5, max_tokens: 100, cache: {enabled: false}}
        steps:
          - id: ask
            kind: llm
            prompt: "Hello"
            timeout: 20s
            retry: {attempts: 1}
        """,
        provider=provider,
    )

    result = harness.run(run_id="r")

    assert result.status == RunStatus.FAILED
    assert provider.times == [0.0]
    assert provider.received[0].delivery.timeout == 20.0
    assert harness.clock.now == 20.0  # not the provider's 45 s
    (call,) = harness.calls("r")
    assert (call["outcome"], call["latency_s"]) == ("error", 20.0)
    assert call["error"] == "anthropic: the request timed out after 20s"


BUDGETED = """
name: budgeted
max_parallel_steps: 1  # one at a time: which call the budget refuses is the third in the list
llm: {model: claude-haiku-4-5, max_tokens: 1000, cache: {enabled: false}}
steps:
  - {id: one, kind: llm, prompt: "One"}
  - {id: two, kind: llm, prompt: "Two"}
  - {id: three, kind: llm, prompt: "Three"}
"""


def test_the_budget_pauses_the_run_before_the_call_that_could_pass_it(tmp_path: Path) -> None:
    # claude-haiku-4-5 at $1 / $5 per million: each reply costs 1,000 x $1 + 1,000 x $5 =
    # $0.006; the most a call could cost is a little over $0.005 (a full 1,000-token reply)
    provider = ScriptedProvider(script=reply("ok", input_tokens=1000, output_tokens=1000))
    harness = InProcess(tmp_path, BUDGETED, "x", provider=provider)

    paused = harness.run(run_id="r", max_cost=0.015)

    # one ($0.006) and two ($0.012) fit; three could reach $0.017: it is never sent
    assert (paused.status, paused.exit_code) == (RunStatus.PAUSED, 3)
    assert paused.message is not None
    assert paused.message.startswith(
        "the budget of $0.0150 would be passed: $0.0120 spent so far, and the next call to "
        "claude-haiku-4-5 could cost up to $0.0050"
    )
    assert provider.prompts == ["One", "Two"]
    state = harness.state("r")
    assert (state.status, state.pause_reason, state.max_cost_usd) == (
        RunStatus.PAUSED,
        "budget",
        0.015,
    )
    assert [s.status for s in state.steps] == [
        StepStatus.COMPLETED,
        StepStatus.COMPLETED,
        StepStatus.PENDING,
    ]
    assert len(harness.calls("r")) == 2  # the refused call left no record

    still = harness.resume("r")  # the same budget, kept in the run: still no room
    assert (still.status, provider.prompts) == (RunStatus.PAUSED, ["One", "Two"])

    resumed = harness.resume("r", max_cost=0.05)
    assert resumed.status == RunStatus.COMPLETED
    assert provider.prompts == ["One", "Two", "Three"]
    assert harness.state("r").usage.cost_usd == pytest.approx(0.018)


def test_the_runs_usage_totals_equal_its_call_records(tmp_path: Path) -> None:
    provider = ScriptedProvider(
        script=by_prompt(
            {"Two": reply("two", input_tokens=300, output_tokens=40)},
            default=reply("other", input_tokens=1000, output_tokens=200),
        )
    ).then(rate_limited(retry_after=1.0))  # one failed attempt: a request, no tokens
    harness = three_steps(tmp_path, provider)

    assert harness.run(run_id="r").status == RunStatus.COMPLETED
    assert harness.resume("r", from_step="three").status == RunStatus.COMPLETED

    calls = harness.calls("r")
    usage = harness.state("r").usage
    assert len(calls) == 5  # one's two attempts, two, three and three again
    ok = [c for c in calls if c["outcome"] == "ok"]
    assert usage.requests == len(calls) == len(provider.received)
    assert usage.input_tokens == sum(c["input_tokens"] for c in ok) == 3 * 1000 + 300
    assert usage.output_tokens == sum(c["output_tokens"] for c in ok) == 3 * 200 + 40
    # $1 / $5 per million: 3 x $0.002 + $0.0005
    assert usage.cost_usd == pytest.approx(sum(c["cost_usd"] for c in ok))
    assert usage.cost_usd == pytest.approx(0.0065)
    assert usage.priced_calls == 4 and usage.unpriced_calls == 0
