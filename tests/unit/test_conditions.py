"""``when:``, driven in-process: a false condition skips the step (readers get none, ``needs:``
on it is satisfied), one the plan can answer from disk is answered there (and a changed input
that flips it re-plans the step on resume, with the reason), one that reads a step of this
run is asked as the step is about to start, and a condition that fails fails its step."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepline.engine.events import EventType
from stepline.errors import SpecError
from stepline.spec import parse_spec
from stepline.store.state import RunStatus, StepStatus
from tests.fakes.scripted import ScriptedProvider, by_prompt, reply
from tests.inprocess import InProcess

LLM = "llm: {model: claude-haiku-4-5, max_tokens: 100, cache: {enabled: false}}"

ON_INPUT = f"""
name: on-input
{LLM}
steps:
  - id: urgent
    kind: llm
    prompt: "Escalate {{{{ input.text }}}}"
    when: "{{{{ 'urgent' in input.text }}}}"
  - {{id: after, kind: llm, prompt: "Escalated: {{{{ steps.urgent is none }}}}"}}
  - {{id: tally, kind: python, function: "tally:count", needs: [urgent]}}
"""
TALLY = """
def count(ctx):
    return {"urgent": ctx.steps["urgent"]}
"""


def on_input(folder: Path, text: str) -> InProcess:
    harness = InProcess(folder, ON_INPUT, text)
    harness.write("tally.py", TALLY)
    return harness


def actions(result: object) -> list[tuple[str, str, str]]:
    return [(d.id, d.action.value, d.reason) for d in result.decisions]  # type: ignore[attr-defined]


def test_a_false_condition_skips_the_step_and_later_steps_read_none(tmp_path: Path) -> None:
    harness = on_input(tmp_path, "a calm note")

    result = harness.run(run_id="r")

    assert result.status == RunStatus.COMPLETED
    assert actions(result)[0] == ("urgent", "skip", "when gives false")
    assert harness.provider.prompts == ["Escalated: True"]
    state = harness.state("r")
    assert (state.steps[0].status, state.steps[0].when, state.steps[0].output) == (
        StepStatus.SKIPPED,
        False,
        None,
    )
    assert harness.output_file("r", "steps/03-tally.json") == {"urgent": None}  # needs: holds
    skipped = harness.of_type(EventType.STEP_SKIPPED)
    assert [(e.step, e.message) for e in skipped] == [("urgent", "when gives false")]


def test_show_says_why_a_step_was_skipped(cli, tmp_path: Path) -> None:
    harness = on_input(tmp_path, "a calm note")
    harness.run(run_id="r")

    shown = cli("show", "r", "--workdir", str(harness.settings.workdir))

    row = next(line for line in shown.stdout.splitlines() if " urgent " in line)
    assert "skipped (when gave false)" in row


def test_a_true_condition_runs_the_step(tmp_path: Path) -> None:
    harness = on_input(tmp_path, "urgent: the build is red")

    result = harness.run(run_id="r")

    assert result.status == RunStatus.COMPLETED
    assert harness.provider.prompts[0] == "Escalate urgent: the build is red"
    first = harness.state("r").steps[0]
    assert (first.when, first.status, first.attempts) == (True, StepStatus.COMPLETED, 1)
    assert [e.step for e in harness.of_type(EventType.STEP_STARTED)][0] == "urgent"


def test_a_resume_with_nothing_changed_keeps_the_step_skipped_and_its_readers_reused(
    tmp_path: Path,
) -> None:
    harness = on_input(tmp_path, "a calm note")
    harness.run(run_id="r")

    again = harness.resume("r")

    assert actions(again) == [
        ("urgent", "skip", "when gives false"),
        ("after", "reuse", "completed, unchanged"),
        ("tally", "reuse", "completed, unchanged"),
    ]
    assert len(harness.provider.received) == 1


def test_an_input_that_flips_the_condition_re_plans_the_step_with_the_reason(
    tmp_path: Path,
) -> None:
    harness = on_input(tmp_path, "a calm note")
    harness.run(run_id="r")
    run_input = harness.run_dir("r") / "input" / "original.txt"  # what a resume reads
    run_input.write_text("urgent: the build is red")

    flipped = harness.resume("r")

    assert actions(flipped)[0] == ("urgent", "run", "when now gives true")
    assert harness.provider.prompts[1:] == [
        "Escalate urgent: the build is red",
        "Escalated: False",
    ]
    assert harness.state("r").steps[0].when is True

    run_input.write_text("calm again")
    back = harness.resume("r")

    assert actions(back)[0] == ("urgent", "skip", "when now gives false")
    state = harness.state("r")
    assert (state.steps[0].status, state.steps[0].output) == (StepStatus.SKIPPED, None)
    assert harness.output_file("r", "steps/03-tally.json") == {"urgent": None}


def test_a_condition_on_a_step_of_this_run_is_asked_as_the_step_is_about_to_start(
    tmp_path: Path,
) -> None:
    harness = InProcess(
        tmp_path,
        f"""
        name: asked-late
        {LLM}
        steps:
          - {{id: triage, kind: llm, prompt: "Is {{{{ input.text }}}} a bug?"}}
          - id: fix
            kind: llm
            prompt: "Fix {{{{ input.text }}}}"
            when: "{{{{ steps.triage == 'yes' }}}}"
        """,
        "the login",
        provider=ScriptedProvider(script=by_prompt({"Is": reply("no")})),
    )

    result = harness.run(run_id="r")

    assert actions(result)[1] == ("fix", "run", "not run yet")  # the plan cannot know yet
    assert harness.provider.prompts == ["Is the login a bug?"]
    assert harness.state("r").steps[1].status == StepStatus.SKIPPED
    skipped = harness.of_type(EventType.STEP_SKIPPED)
    assert [(e.step, e.message) for e in skipped] == [("fix", "when gave false")]
    assert harness.of_type(EventType.STEP_STARTED)[-1].step == "triage"  # fix never started


@pytest.mark.parametrize(("value", "runs"), [("false", False), ("no", False), ("yes", True)])
def test_a_set_variable_is_text_and_false_words_mean_false(
    tmp_path: Path, value: str, runs: bool
) -> None:
    harness = InProcess(
        tmp_path,
        f"""
        name: flag
        {LLM}
        vars: {{publish: true}}
        steps:
          - {{id: post, kind: llm, prompt: "Post", when: "{{{{ vars.publish }}}}"}}
        """,
    )

    harness.run(run_id="r", variables={"publish": value})

    assert (harness.provider.prompts == ["Post"]) is runs


def test_a_condition_that_fails_fails_its_step_with_the_template_error(tmp_path: Path) -> None:
    harness = InProcess(
        tmp_path,
        f"""
        name: broken
        {LLM}
        steps:
          - {{id: triage, kind: llm, prompt: "Triage"}}
          - {{id: fix, kind: llm, prompt: "Fix", when: "{{{{ steps.triage.kind == 'bug' }}}}"}}
        """,
    )

    result = harness.run(run_id="r")

    assert (result.status, result.exit_code) == (RunStatus.FAILED, 1)
    fix = harness.state("r").steps[1]
    assert fix.status == StepStatus.FAILED
    assert (fix.error or "").startswith('step "fix" when: ')
    assert "kind" in (fix.error or "")
    assert harness.provider.prompts == ["Triage"]


@pytest.mark.parametrize(
    ("step", "words"),
    [
        ('{id: s, kind: shell, command: [echo], when: "yes"}', "when must be a single"),
        (
            '{id: s, kind: shell, command: [echo], for_each: input.lines, when: "{{ item }}"}',
            'step "s": when cannot use item',
        ),
    ],
)
def test_a_bad_condition_is_a_config_error(step: str, words: str) -> None:
    from stepline.engine.references import analyse_spec

    with pytest.raises(SpecError) as raised:
        spec = parse_spec(f"name: bad\nsteps:\n  - {step}\n")
        analyse_spec(spec, {})

    assert words in raised.value.message
