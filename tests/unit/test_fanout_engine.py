"""Fan-out in-process: concurrency, per-item checkpoints and what a resume asks again,
``on_item_error``, and the run's ``rate_limit``, timed exactly on a mock clock. The CLI's side
of these contracts is tests/e2e/test_fanout.py and test_rate_limit.py."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from stepline.engine.events import EventType
from stepline.errors import ProviderRequestError
from stepline.providers.base import LLMRequest
from stepline.store.state import RunStatus, StepStatus
from tests.fakes.scripted import ScriptedProvider, by_prompt, echo
from tests.inprocess import InProcess

LINES = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]

FAN_OUT = """
name: fan
TOP
llm: {model: claude-haiku-4-5, max_tokens: 100, cache: {enabled: false}, retry: {attempts: 1}}
steps:
  - id: label
    kind: llm
    for_each: input.lines
    item_key: "{{ item }}"
    concurrency: CONCURRENCY
    on_item_error: ON_ERROR
    prompt: "Label {{ item }}"
"""


def fan_out(
    folder: Path,
    provider: ScriptedProvider,
    *,
    items: list[str] = LINES,
    concurrency: int = 1,
    on_error: str = "fail",
    top: str = "",
) -> InProcess:
    config = (
        FAN_OUT.replace("CONCURRENCY", str(concurrency))
        .replace("ON_ERROR", on_error)
        .replace("TOP", top)
    )
    return InProcess(folder, config, "\n".join(items) + "\n", provider=provider)


def bad(item: str) -> ProviderRequestError:
    return ProviderRequestError(f"anthropic: 400 invalid_request_error: no {item}", status_code=400)


def failing(*items: str) -> ScriptedProvider:
    """Answers every item with an echo, and the given ones with a 400."""
    return ScriptedProvider(script=by_prompt({f"Label {item}": bad(item) for item in items}))


def labels(items: list[str]) -> list[str]:
    return [f"Label {item}" for item in items]


@pytest.mark.parametrize(("concurrency", "latency"), [(3, 4.0), (4, 2.5), (1, 1.0)])
def test_concurrency_bounds_the_requests_in_flight_and_the_step_takes_its_waves(
    tmp_path: Path, concurrency: int, latency: float
) -> None:
    provider = ScriptedProvider(latency=latency)
    harness = fan_out(tmp_path, provider, concurrency=concurrency)

    result = harness.run(run_id="r")

    assert result.status == RunStatus.COMPLETED
    assert provider.most_in_flight == concurrency
    waves = math.ceil(len(LINES) / concurrency)
    assert harness.clock.now == waves * latency
    # a slot is taken again the moment an item ends: item i starts in wave i // concurrency
    assert provider.times == [(i // concurrency) * latency for i in range(len(LINES))]
    assert result.outputs["label"] == [f"echo: Label {item}" for item in LINES]
    metrics = harness.state("r").steps[0].metrics
    assert (metrics["items"], metrics["items_done"], metrics["items_failed"]) == (10, 10, 0)


def test_a_failed_item_fails_the_step_keeping_the_finished_items_and_resume_asks_only_the_rest(
    tmp_path: Path,
) -> None:
    provider = failing("delta")
    harness = fan_out(tmp_path, provider, on_error="fail")

    result = harness.run(run_id="r")

    assert (result.status, result.exit_code) == (RunStatus.FAILED, 1)
    assert provider.prompts == labels(LINES[:4])  # nothing is launched after the failure
    assert result.message == (
        'step "label": 1 of 10 items failed; item "delta": '
        "anthropic: 400 invalid_request_error: no delta"
    )
    assert harness.state("r").steps[0].status == StepStatus.FAILED

    provider.script = echo  # the cause is fixed
    resumed = harness.resume("r")

    assert resumed.status == RunStatus.COMPLETED
    assert provider.prompts[4:] == labels(LINES[3:])  # alpha, beta, gamma are checkpointed
    assert resumed.outputs["label"] == [f"echo: Label {item}" for item in LINES]
    metrics = harness.state("r").steps[0].metrics
    assert (metrics["items_reused"], metrics["items_done"]) == (3, 7)


def test_on_item_error_skip_leaves_failed_items_out_and_a_resume_asks_only_those(
    tmp_path: Path,
) -> None:
    provider = failing("beta", "eta")
    harness = fan_out(tmp_path, provider, on_error="skip", concurrency=4)

    result = harness.run(run_id="r")

    assert result.status == RunStatus.COMPLETED
    assert sorted(provider.prompts) == sorted(labels(LINES))  # the step went on
    expected = [f"echo: Label {item}" for item in LINES if item not in ("beta", "eta")]
    assert result.outputs["label"] == expected
    step = harness.state("r").steps[0]
    assert step.status == StepStatus.COMPLETED
    assert (step.metrics["items_failed"], step.metrics["items_done"]) == (2, 8)
    assert step.metrics["failed_items"] == [
        {"item_key": "beta", "error": "anthropic: 400 invalid_request_error: no beta"},
        {"item_key": "eta", "error": "anthropic: 400 invalid_request_error: no eta"},
    ]

    kept = harness.resume("r", skip_failed=True)  # leaves them failed: nothing is asked
    assert kept.status == RunStatus.COMPLETED and len(provider.received) == 10

    provider.script = echo
    retried = harness.resume("r")

    assert retried.status == RunStatus.COMPLETED
    assert sorted(provider.prompts[10:]) == labels(["beta", "eta"])
    assert retried.outputs["label"] == [f"echo: Label {item}" for item in LINES]


def test_on_item_error_collect_puts_an_error_record_in_each_failed_items_place(
    tmp_path: Path,
) -> None:
    provider = failing("gamma")
    harness = fan_out(tmp_path, provider, items=LINES[:4], on_error="collect")

    result = harness.run(run_id="r")

    assert result.status == RunStatus.COMPLETED
    assert result.outputs["label"] == [
        "echo: Label alpha",
        "echo: Label beta",
        {"error": "anthropic: 400 invalid_request_error: no gamma", "item_key": "gamma"},
        "echo: Label delta",
    ]
    warnings = [e.message for e in harness.of_type(EventType.LOG)]
    assert warnings == ['item "gamma" failed: anthropic: 400 invalid_request_error: no gamma']


def test_an_interrupted_fan_out_resumes_with_only_the_items_it_had_not_finished(
    tmp_path: Path,
) -> None:
    provider = ScriptedProvider(latency=1.0)
    harness = fan_out(tmp_path, provider, concurrency=2)

    def ctrl_c_at_epsilon(request: LLMRequest) -> None:
        if request.prompt == "Label epsilon":  # Ctrl-C as epsilon's request goes out
            harness.interrupt()

    provider.on_request = ctrl_c_at_epsilon

    stopped = harness.run(run_id="r")

    assert (stopped.status, stopped.exit_code) == (RunStatus.INTERRUPTED, 130)
    assert provider.prompts == labels(LINES[:6])  # epsilon and zeta were in flight
    assert harness.state("r").steps[0].status == StepStatus.PENDING
    cut = [(c["item_key"], c["error"]) for c in harness.calls("r") if c["outcome"] == "error"]
    assert sorted(cut) == [("epsilon", "interrupted"), ("zeta", "interrupted")]

    provider.on_request = None
    resumed = harness.resume("r")

    assert resumed.status == RunStatus.COMPLETED
    assert provider.prompts[6:] == labels(LINES[4:])
    assert resumed.outputs["label"] == [f"echo: Label {item}" for item in LINES]
    cut_short = [
        e.message for e in harness.of_type(EventType.LOG) if "cut short" in (e.message or "")
    ]
    assert cut_short == [
        "2 item(s) were cut short last time (in flight when the run stopped or the step "
        "failed); their LLM calls were sent again"
    ]


def test_rate_limit_spaces_the_item_requests_exactly_evenly(tmp_path: Path) -> None:
    provider = ScriptedProvider(latency=0.25)
    harness = fan_out(tmp_path, provider, items=LINES[:6], concurrency=8, top="rate_limit: 60/min")

    result = harness.run(run_id="r")

    assert result.status == RunStatus.COMPLETED
    assert provider.times == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # one a second, not a burst
    assert provider.most_in_flight == 1  # each took 0.25 s of its 1 s slot
    assert harness.clock.now == 5.25


def test_rate_limit_is_shared_by_the_steps_of_a_run(tmp_path: Path) -> None:
    provider = ScriptedProvider()
    harness = InProcess(
        tmp_path,
        """
        name: shared
        rate_limit: 30/min
        llm: {model: claude-haiku-4-5, max_tokens: 100, cache: {enabled: false}}
        steps:
          - {id: first, kind: llm, prompt: "First"}
          - {id: each, kind: llm, for_each: input.lines, concurrency: 3, prompt: "{{ item }}"}
        """,
        "a\nb\nc\n",
        provider=provider,
    )

    assert harness.run(run_id="r").status == RunStatus.COMPLETED
    assert provider.times == [0.0, 2.0, 4.0, 6.0]  # 30/min: one every 2 s, across steps
