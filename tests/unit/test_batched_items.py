"""Batch mode in-process: one submission, the polls' backoff timed exactly on a mock clock,
results per item at batch prices, errored results under ``on_item_error`` and
``batch_fallback: live``, and a resume that polls the batch it had submitted. The wire side
(the Message Batches endpoints) is tests/e2e/test_batch_mode.py and test_fake_batches.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepline.engine.events import EventType
from stepline.errors import ProviderRequestError
from stepline.providers.base import LLMRequest
from stepline.store.state import RunStatus, StepStatus
from tests.fakes.scripted import ScriptedProvider, by_prompt, reply
from tests.inprocess import InProcess

ITEMS = ["alpha", "beta", "gamma", "delta", "epsilon"]

BATCHED = """
name: batched
llm: {model: claude-haiku-4-5, max_tokens: 100, cache: {enabled: false}, retry: {attempts: 1}}
steps:
  - id: label
    kind: llm
    for_each: input.lines
    item_key: "{{ item }}"
    mode: batch
    batch_poll: POLL
    on_item_error: ON_ERROR
    prompt: "Label {{ item }}"
EXTRA
"""

# claude-haiku-4-5 at $1 / $5 per million tokens: 1,000 in and 100 out cost $0.0015 live
LIVE_USD = 1000 * 1.0 / 1e6 + 100 * 5.0 / 1e6
BATCH_USD = LIVE_USD / 2


def labelled(text: str) -> ScriptedProvider:
    """Replies of 1,000 tokens in and 100 out; ``text`` is prefixed to the item's name."""
    provider = ScriptedProvider(batch_latency=20.0)
    provider.script = lambda request: reply(
        text + request.prompt.removeprefix("Label "), input_tokens=1000, output_tokens=100
    )(request)
    return provider


def batched(
    folder: Path,
    provider: ScriptedProvider,
    *,
    poll: str = "8s",
    on_error: str = "fail",
    extra: str = "",
) -> InProcess:
    config = BATCHED.replace("POLL", poll).replace("ON_ERROR", on_error).replace("EXTRA", extra)
    return InProcess(folder, config, "\n".join(ITEMS) + "\n", provider=provider)


def test_the_items_go_out_as_one_batch_and_land_per_item_at_batch_prices(tmp_path: Path) -> None:
    provider = labelled("L:")
    harness = batched(tmp_path, provider)

    result = harness.run(run_id="r")

    assert result.status == RunStatus.COMPLETED
    assert provider.received == []  # nothing was asked live
    (batch_id,) = provider.batches
    batch = provider.batches[batch_id]
    assert [sent.custom_id for sent in batch.requests] == ITEMS
    assert [sent.request.prompt for sent in batch.requests] == [f"Label {i}" for i in ITEMS]
    assert result.outputs["label"] == [f"L:{item}" for item in ITEMS]
    calls = harness.calls("r")
    assert [(c["item_key"], c["batch_id"], c["outcome"]) for c in calls] == [
        (item, batch_id, "ok") for item in ITEMS
    ]
    assert [c["cost_usd"] for c in calls] == pytest.approx([BATCH_USD] * 5)
    step = harness.state("r").steps[0]
    assert step.metrics["cost_usd"] == pytest.approx(5 * BATCH_USD)
    assert (step.metrics["items_done"], step.metrics["input_tokens"]) == (5, 5000)
    assert harness.state("r").usage.cost_usd == pytest.approx(5 * BATCH_USD)


@pytest.mark.parametrize(
    ("latency", "poll", "polls"),
    [
        # waits of 1, 2, 4, then batch_poll (8) each time: the batch ends at 20
        (20.0, "8s", [0.0, 1.0, 3.0, 7.0, 15.0, 23.0]),
        # the doubling never reaches a batch_poll of 60 s before the batch ends at 20
        (20.0, "60s", [0.0, 1.0, 3.0, 7.0, 15.0, 31.0]),
        # a batch_poll under a second is also the first wait
        (2.0, "500ms", [0.0, 0.5, 1.0, 1.5, 2.0]),
        # a batch that has ended by the first poll is collected at once
        (0.0, "8s", [0.0]),
    ],
)
def test_polls_back_off_from_one_second_doubling_up_to_batch_poll(
    tmp_path: Path, latency: float, poll: str, polls: list[float]
) -> None:
    provider = labelled("L:")
    provider.batch_latency = latency
    harness = batched(tmp_path, provider, poll=poll)

    result = harness.run(run_id="r")

    assert result.status == RunStatus.COMPLETED
    assert provider.polls == polls
    assert harness.clock.now == polls[-1]  # collected at the poll that saw it end
    assert len(provider.batches) == 1


def test_a_fan_out_over_batch_size_is_sent_as_several_batches_polled_together(
    tmp_path: Path,
) -> None:
    provider = labelled("L:")
    provider.batch_latency = 3.0
    harness = batched(tmp_path, provider, extra="    batch_size: 2")

    result = harness.run(run_id="r")

    assert result.status == RunStatus.COMPLETED
    sizes = [[sent.custom_id for sent in batch.requests] for batch in provider.batches.values()]
    assert sizes == [["alpha", "beta"], ["gamma", "delta"], ["epsilon"]]
    # each round polls every open batch: rounds at 0, 1 and 3 (when all three have ended)
    assert provider.polls == [0.0] * 3 + [1.0] * 3 + [3.0] * 3
    assert result.outputs["label"] == [f"L:{item}" for item in ITEMS]


def refused(item: str) -> ProviderRequestError:
    return ProviderRequestError(
        f"Anthropic API (invalid_request_error): bad {item}", status_code=400
    )


def test_an_errored_result_is_collected_as_the_items_failure(tmp_path: Path) -> None:
    provider = labelled("L:")
    answer_others = provider.script
    provider.script = by_prompt({"Label beta": refused("beta")}, default=answer_others)
    harness = batched(tmp_path, provider, on_error="collect")

    result = harness.run(run_id="r")

    assert result.status == RunStatus.COMPLETED
    error = "the batch request failed: Anthropic API (invalid_request_error): bad beta"
    assert result.outputs["label"] == [
        "L:alpha",
        {"error": error, "item_key": "beta"},
        "L:gamma",
        "L:delta",
        "L:epsilon",
    ]
    assert provider.received == []  # no live call for it
    beta = [c for c in harness.calls("r") if c["item_key"] == "beta"]
    assert [(c["outcome"], c["error"], c["cost_usd"]) for c in beta] == [("error", error, None)]
    assert harness.state("r").steps[0].metrics["items_failed"] == 1


def test_an_errored_result_fails_the_step_under_on_item_error_fail(tmp_path: Path) -> None:
    provider = labelled("L:")
    answer_others = provider.script
    provider.script = by_prompt({"Label gamma": refused("gamma")}, default=answer_others)
    harness = batched(tmp_path, provider)

    result = harness.run(run_id="r")

    assert (result.status, result.exit_code) == (RunStatus.FAILED, 1)
    assert result.message == (
        'step "label": 1 of 5 items failed; item "gamma": '
        "the batch request failed: Anthropic API (invalid_request_error): bad gamma"
    )
    assert harness.state("r").steps[0].status == StepStatus.FAILED


def test_batch_fallback_live_asks_an_errored_request_again_live_at_live_prices(
    tmp_path: Path,
) -> None:
    provider = labelled("L:")
    answer_others = provider.script
    in_batch = {"Label delta": refused("delta")}
    provider.script = by_prompt(in_batch, default=answer_others)

    def live(request: LLMRequest) -> None:  # the live call answers what the batch did not
        in_batch.clear()

    harness = batched(tmp_path, provider, extra="    batch_fallback: live")
    provider.on_request = live

    result = harness.run(run_id="r")

    assert result.status == RunStatus.COMPLETED
    assert provider.prompts == ["Label delta"]  # the one live request
    assert provider.times == [23.0]  # asked once the batch was collected
    assert result.outputs["label"] == [f"L:{item}" for item in ITEMS]
    delta = [c for c in harness.calls("r") if c["item_key"] == "delta"]
    assert [(c["outcome"], c["batch_id"] is None) for c in delta] == [
        ("error", False),
        ("ok", True),
    ]
    assert delta[1]["cost_usd"] == pytest.approx(LIVE_USD)
    step = harness.state("r").steps[0]
    assert step.metrics["cost_usd"] == pytest.approx(4 * BATCH_USD + LIVE_USD)
    assert step.metrics["items_failed"] == 0
    asked_live = [e.message for e in harness.of_type(EventType.LOG) if "live" in (e.message or "")]
    assert asked_live == [
        'item "delta": the batch request failed: Anthropic API (invalid_request_error): '
        "bad delta; asking live instead"
    ]


def test_a_resume_after_the_batch_was_submitted_polls_that_batch_instead_of_sending_anew(
    tmp_path: Path,
) -> None:
    provider = labelled("L:")
    harness = batched(tmp_path, provider)

    def ctrl_c_at_the_first_poll(batch_id: str) -> None:
        if len(provider.polls) == 1:
            harness.interrupt()

    provider.on_poll = ctrl_c_at_the_first_poll

    stopped = harness.run(run_id="r")

    assert (stopped.status, stopped.exit_code) == (RunStatus.INTERRUPTED, 130)
    (batch_id,) = provider.batches
    assert harness.calls("r") == []  # no result collected yet
    assert harness.state("r").steps[0].status == StepStatus.PENDING

    resumed = harness.resume("r")

    assert resumed.status == RunStatus.COMPLETED
    assert list(provider.batches) == [batch_id]  # not submitted again
    # the first run's poll at 0, then the resume's own backoff until the batch ends at 20
    assert provider.polls == [0.0, 0.0, 1.0, 3.0, 7.0, 15.0, 23.0]
    assert provider.received == []
    assert resumed.outputs["label"] == [f"L:{item}" for item in ITEMS]
    assert {c["batch_id"] for c in harness.calls("r")} == {batch_id}
    assert len(harness.calls("r")) == 5
