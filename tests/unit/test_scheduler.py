"""Steps at once, driven in-process on the mock clock: independent steps overlap and the join
waits, ``--jobs`` / ``max_parallel_steps`` bound them, a critical failure stops new starts
while running steps finish, a non-critical one fails only what waits for it, pauses hold new
starts, Ctrl-C with several steps running, ``--from-step`` / ``--to-step`` over the graph,
and what a Python step may read. Virtual times are exact: every step's latency is scripted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stepline.engine.events import Event, EventType
from stepline.engine.pauses import PauseMode, PausePoint
from stepline.providers.base import LLMRequest
from stepline.store.state import RunStatus, StepStatus
from tests.fakes.scripted import ScriptedProvider, reply
from tests.inprocess import InProcess

LLM = "llm: {model: claude-haiku-4-5, max_tokens: 100, cache: {enabled: false}}"

FAN_IN = f"""
name: fan-in
{LLM}
steps:
  - {{id: a, kind: llm, prompt: "A {{{{ input.text }}}}"}}
  - {{id: b, kind: llm, prompt: "B {{{{ input.text }}}}"}}
  - {{id: c, kind: llm, prompt: "C {{{{ input.text }}}}"}}
  - {{id: join, kind: llm, prompt: "Join {{{{ steps.a }}}} {{{{ steps.b }}}} {{{{ steps.c }}}}"}}
"""

# Python steps whose running time is set per step id (async, so on the mock clock)
TIMED = """
import asyncio

SECONDS = {"slow": 3.0, "boom": 1.0, "review": 1.0, "early": 1.0}


async def nap(ctx):
    await asyncio.sleep(SECONDS.get(ctx.step_id, 0.0))
    return ctx.step_id


async def boom(ctx):
    await asyncio.sleep(SECONDS["boom"])
    raise RuntimeError("boom went wrong")


def peek(ctx):
    return sorted(name for name in ctx.steps if ctx.steps[name] is not None)


def read_b(ctx):
    return ctx.steps["b"]
"""


def fan_in(folder: Path, **options: Any) -> InProcess:
    return InProcess(folder, FAN_IN, "x", provider=ScriptedProvider(latency=0.5))


def timed(folder: Path, config: str, provider: ScriptedProvider | None = None) -> InProcess:
    harness = InProcess(folder, config, "x", provider=provider)
    harness.write("timed.py", TIMED)
    return harness


def started_and_ended(harness: InProcess) -> list[tuple[str, str | None]]:
    kinds = {EventType.STEP_STARTED, EventType.STEP_COMPLETED, EventType.STEP_FAILED}
    return [(e.type.value, e.step) for e in harness.events if e.type in kinds]


def test_independent_steps_start_together_and_the_join_waits_for_all_of_them(
    tmp_path: Path,
) -> None:
    harness = fan_in(tmp_path)

    result = harness.run(run_id="r")

    assert result.status == RunStatus.COMPLETED
    assert harness.provider.prompts[:3] == ["A x", "B x", "C x"]
    assert harness.provider.times == [0.0, 0.0, 0.0, 0.5]  # the join once all three are done
    assert harness.provider.most_in_flight == 3
    assert harness.clock.now == 1.0  # the critical path: one of a, b, c, then the join
    assert (
        harness.output_file("r", "steps/04-join.json") == "echo: Join echo: A x echo: B x echo: C x"
    )
    assert [s.status for s in harness.state("r").steps] == [StepStatus.COMPLETED] * 4
    started = [e.step for e in harness.of_type(EventType.STEP_STARTED)]
    assert started == ["a", "b", "c", "join"]  # in list order, whatever finishes first


def test_jobs_1_runs_the_steps_one_at_a_time_in_list_order(tmp_path: Path) -> None:
    harness = fan_in(tmp_path)

    harness.run(run_id="r", jobs=1)

    assert harness.provider.times == [0.0, 0.5, 1.0, 1.5]
    assert harness.provider.most_in_flight == 1
    assert harness.state("r").jobs == 1  # kept for the resume


def test_max_parallel_steps_bounds_the_steps_at_once(tmp_path: Path) -> None:
    harness = InProcess(
        tmp_path,
        FAN_IN.replace("name: fan-in", "name: fan-in\nmax_parallel_steps: 2"),
        "x",
        provider=ScriptedProvider(latency=0.5),
    )

    harness.run(run_id="r")

    assert harness.provider.times == [0.0, 0.0, 0.5, 1.0]
    assert harness.provider.most_in_flight == 2


def test_a_chain_runs_exactly_as_it_does_one_step_at_a_time(tmp_path: Path) -> None:
    chain = f"""
    name: chain
    {LLM}
    steps:
      - {{id: one, kind: llm, prompt: "One {{{{ input.text }}}}"}}
      - {{id: two, kind: python, function: "timed:nap"}}
      - {{id: three, kind: llm, prompt: "Three {{{{ steps.two }}}}"}}
      - {{id: four, kind: shell, command: [echo, "{{{{ steps.three }}}}"]}}
    """
    runs = []
    for folder, jobs in ((tmp_path / "graph", None), (tmp_path / "list", 1)):
        folder.mkdir()
        harness = timed(folder, chain)
        harness.run(run_id="r", jobs=jobs)
        runs.append(harness)

    graph, listed = runs
    assert [(e.type, e.step, e.message) for e in graph.events] == [
        (e.type, e.step, e.message) for e in listed.events
    ]
    assert graph.provider.prompts == listed.provider.prompts == ["One x", "Three two"]


def test_several_steps_are_running_at_once_in_state_json(tmp_path: Path) -> None:
    harness = fan_in(tmp_path)
    seen: list[list[str]] = []

    def look(request: LLMRequest) -> None:
        if request.prompt == "C x":
            seen.append([step.status.value for step in harness.state("r").steps])

    harness.provider.on_request = look
    harness.run(run_id="r")

    assert seen == [["running", "running", "running", "pending"]]


def test_a_critical_failure_stops_new_starts_and_lets_running_steps_finish(
    tmp_path: Path,
) -> None:
    harness = timed(
        tmp_path,
        """
        name: critical
        max_parallel_steps: 2
        steps:
          - {id: slow, kind: python, function: "timed:nap", needs: []}
          - {id: boom, kind: python, function: "timed:boom", needs: []}
          - {id: later, kind: python, function: "timed:nap", needs: []}
        """,
    )

    result = harness.run(run_id="r")

    assert (result.status, result.exit_code) == (RunStatus.FAILED, 1)
    assert "boom went wrong" in (result.message or "")
    assert harness.clock.now == 3.0  # "slow" was let finish
    state = harness.state("r")
    assert [(s.id, s.status) for s in state.steps] == [
        ("slow", StepStatus.COMPLETED),
        ("boom", StepStatus.FAILED),
        ("later", StepStatus.PENDING),  # never started: the failure came first
    ]
    assert state.steps[0].output == "steps/01-slow.json"

    again = harness.resume("r")

    assert again.status == RunStatus.FAILED  # boom fails again; slow is not run again
    assert [d.action.value for d in again.decisions] == ["reuse", "run", "run"]


def test_a_non_critical_failure_fails_only_the_steps_that_wait_for_it(tmp_path: Path) -> None:
    harness = timed(
        tmp_path,
        f"""
        name: branches
        {LLM}
        steps:
          - {{id: boom, kind: python, function: "timed:boom", critical: false, needs: []}}
          - {{id: reader, kind: llm, prompt: "R {{{{ steps.boom }}}}", critical: false}}
          - {{id: waiter, kind: llm, prompt: "W", needs: [boom], critical: false}}
          - {{id: other, kind: llm, prompt: "Other {{{{ input.text }}}}"}}
        """,
    )

    result = harness.run(run_id="r")

    assert result.status == RunStatus.COMPLETED
    state = harness.state("r")
    assert [(s.id, s.status) for s in state.steps] == [
        ("boom", StepStatus.FAILED),
        ("reader", StepStatus.FAILED),
        ("waiter", StepStatus.FAILED),
        ("other", StepStatus.COMPLETED),
    ]
    assert state.steps[1].error == (
        'step "reader": needs the output of step "boom", which has none in this run'
    )
    assert state.steps[2].error == 'step "waiter": needs step "boom", which failed in this run'
    assert harness.provider.prompts == ["Other x"]  # the independent branch, at once
    assert harness.provider.times == [0.0]


PAUSING = """
name: pausing
steps:
  - {id: review, kind: python, function: "timed:nap", needs: [], pause: true}
  - {id: slow, kind: python, function: "timed:nap", needs: []}
  - {id: after, kind: python, function: "timed:nap", needs: [review]}
"""


def test_a_pause_answered_with_stop_lets_running_steps_finish_and_starts_nothing(
    tmp_path: Path,
) -> None:
    harness = timed(tmp_path, PAUSING)
    asked: list[str] = []

    def stop(point: PausePoint) -> bool:
        asked.append(point.step_id)
        return False

    harness.pause_mode, harness.pauser = PauseMode.ASK, stop

    result = harness.run(run_id="r")

    assert (result.status, result.exit_code) == (RunStatus.PAUSED, 3)
    assert asked == ["review"]
    assert harness.clock.now == 3.0
    state = harness.state("r")
    assert (state.paused_after, state.pause_reason) == ("review", "review")
    assert [s.status for s in state.steps] == [
        StepStatus.COMPLETED,
        StepStatus.COMPLETED,
        StepStatus.PENDING,
    ]

    harness.pause_mode, harness.pauser = PauseMode.NEVER, None
    again = harness.resume("r")

    assert again.status == RunStatus.COMPLETED
    assert [d.action.value for d in again.decisions] == ["reuse", "reuse", "run"]


def test_after_a_pause_is_answered_the_steps_waiting_on_it_start(tmp_path: Path) -> None:
    harness = timed(tmp_path, PAUSING)
    harness.pause_mode, harness.pauser = PauseMode.ASK, lambda point: True

    result = harness.run(run_id="r")

    assert result.status == RunStatus.COMPLETED
    starts = {e.step: i for i, e in enumerate(harness.events) if e.type is EventType.STEP_STARTED}
    ends = {e.step: i for i, e in enumerate(harness.events) if e.type is EventType.STEP_COMPLETED}
    assert starts["after"] > ends["review"] and ends["slow"] > starts["after"]
    assert harness.clock.now == 3.0  # "after" (no sleep) ran while "slow" still slept


def test_ctrl_c_with_steps_running_leaves_each_resumable_and_asks_only_what_is_missing(
    tmp_path: Path,
) -> None:
    provider = ScriptedProvider(latency=1.0)
    harness = timed(
        tmp_path,
        f"""
        name: interrupted
        {LLM}
        steps:
          - {{id: first, kind: python, function: "timed:nap", needs: []}}
          - id: label
            kind: llm
            for_each: input.lines
            concurrency: 2
            prompt: "Label {{{{ item }}}}"
          - {{id: slow, kind: python, function: "timed:nap", needs: []}}
        """,
        provider,
    )
    harness.input_path.write_text("one\ntwo\nthree\nfour\n")

    def ctrl_c(request: LLMRequest) -> None:
        if request.prompt == "Label four":
            harness.interrupt()

    provider.on_request = ctrl_c
    stopped = harness.run(run_id="r")
    provider.on_request = None

    assert (stopped.status, stopped.exit_code) == (RunStatus.INTERRUPTED, 130)
    state = harness.state("r")
    assert [(s.id, s.status) for s in state.steps] == [
        ("first", StepStatus.COMPLETED),
        ("label", StepStatus.PENDING),
        ("slow", StepStatus.PENDING),
    ]
    asked = len(provider.received)

    again = harness.resume("r")

    assert again.status == RunStatus.COMPLETED
    assert [d.action.value for d in again.decisions] == ["reuse", "run", "run"]
    # items one and two were done before Ctrl-C: only three and four are asked again
    assert sorted(provider.prompts[asked:]) == ["Label four", "Label three"]
    assert harness.output_file("r", "steps/02-label.json") == [
        "echo: Label one",
        "echo: Label two",
        "echo: Label three",
        "echo: Label four",
    ]


def test_ctrl_c_between_two_starts_leaves_both_pending_and_nothing_asked(
    tmp_path: Path,
) -> None:
    harness = fan_in(tmp_path)

    def ctrl_c(event: Event) -> None:
        if event.type is EventType.STEP_STARTED and event.step == "a":
            harness.interrupt()  # while "b" and "c" are about to start

    harness.on_event = ctrl_c
    stopped = harness.run(run_id="r")
    harness.on_event = None

    assert stopped.status == RunStatus.INTERRUPTED
    assert harness.provider.received == []
    assert [s.status for s in harness.state("r").steps] == [StepStatus.PENDING] * 4
    assert harness.state("r").current_step is None

    again = harness.resume("r")

    assert again.status == RunStatus.COMPLETED
    assert len(harness.provider.received) == 4


def test_from_step_reruns_only_the_steps_that_wait_for_it(tmp_path: Path) -> None:
    harness = fan_in(tmp_path)
    harness.run(run_id="r")
    asked = len(harness.provider.received)

    again = harness.resume("r", from_step="b")

    assert [d.action.value for d in again.decisions] == ["reuse", "run", "reuse", "run"]
    assert harness.provider.prompts[asked:][0] == "B x"
    assert len(harness.provider.prompts[asked:]) == 2


def test_to_step_runs_that_step_and_what_it_waits_for_then_the_resume_does_the_rest(
    tmp_path: Path,
) -> None:
    harness = InProcess(
        tmp_path,
        f"""
        name: to-step
        {LLM}
        steps:
          - {{id: a, kind: llm, prompt: "A"}}
          - {{id: b, kind: llm, prompt: "B {{{{ steps.a }}}}"}}
          - {{id: c, kind: llm, prompt: "C"}}
          - {{id: d, kind: llm, prompt: "D {{{{ steps.b }}}} {{{{ steps.c }}}}"}}
        """,
    )

    result = harness.run(run_id="r", to_step="b")

    assert (result.status, result.exit_code) == (RunStatus.PAUSED, 0)
    assert result.message == 'stopped after step "b" (--to-step)'
    assert [d.action.value for d in result.decisions] == ["run", "run", "stop", "stop"]
    assert harness.provider.prompts == ["A", "B echo: A"]

    again = harness.resume("r")

    assert again.status == RunStatus.COMPLETED
    assert harness.provider.prompts[2:] == ["C", "D echo: B echo: A echo: C"]


def test_a_python_step_reading_a_step_outside_its_needs_fails_naming_both(
    tmp_path: Path,
) -> None:
    harness = timed(
        tmp_path,
        f"""
        name: undeclared
        {LLM}
        steps:
          - {{id: a, kind: llm, prompt: "A"}}
          - {{id: b, kind: llm, prompt: "B"}}
          - {{id: summary, kind: python, function: "timed:read_b", needs: [a]}}
        """,
    )

    result = harness.run(run_id="r")

    assert result.status == RunStatus.FAILED
    summary = harness.state("r").steps[2]
    assert summary.status == StepStatus.FAILED
    assert summary.error == 'step "summary": reads ctx.steps["b"], but "b" is not in its needs:'
    assert summary.attempts == 1
    failed = harness.of_type(EventType.STEP_FAILED)[0]
    assert failed.data["hint"].startswith('add "b" to the needs: of step "summary"')


def test_a_python_step_sees_only_the_steps_it_waits_for_never_one_that_ran_beside_it(
    tmp_path: Path,
) -> None:
    harness = timed(
        tmp_path,
        f"""
        name: visible
        {LLM}
        steps:
          - {{id: early, kind: python, function: "timed:nap", needs: []}}
          - {{id: peek, kind: python, function: "timed:peek"}}
          - {{id: late, kind: llm, prompt: "Late"}}
        """,
    )

    harness.run(run_id="r")

    # "late" waits for nothing, so it finished at 0 s, before "peek" started at 1 s
    assert harness.provider.times == [0.0]
    assert harness.output_file("r", "steps/02-peek.json") == ["early"]
    assert harness.state("r").steps[1].reads == {
        "early": harness.state("r").steps[0].output_hash,
        "@input": harness.state("r").input_hash,
    }


def test_a_full_budget_stops_new_starts_and_the_run_pauses_once_running_steps_settle(
    tmp_path: Path,
) -> None:
    # each reply costs $0.006; a call is let go only while spent + held + its most ($0.005
    # plus its input) fits: a and b go out together, c is refused, the join never starts
    provider = ScriptedProvider(
        latency=0.5, script=reply("ok", input_tokens=1000, output_tokens=1000)
    )
    harness = InProcess(
        tmp_path, FAN_IN.replace("max_tokens: 100", "max_tokens: 1000"), "x", provider=provider
    )

    paused = harness.run(run_id="r", max_cost=0.0125)

    assert (paused.status, paused.exit_code) == (RunStatus.PAUSED, 3)
    assert harness.provider.prompts == ["A x", "B x"]
    state = harness.state("r")
    assert state.pause_reason == "budget"
    assert [s.status for s in state.steps] == [
        StepStatus.COMPLETED,
        StepStatus.COMPLETED,
        StepStatus.PENDING,
        StepStatus.PENDING,
    ]

    again = harness.resume("r", max_cost=1.0)

    assert again.status == RunStatus.COMPLETED
    assert harness.provider.prompts[2:] == ["C x", "Join ok ok ok"]
