"""The planner: which steps run, are reused, skipped or stopped, and the reason for each."""

from __future__ import annotations

from typing import Any

from stepline.engine.plan import Action, Decision, StepFacts, plan_run
from stepline.store.state import INPUT_KEY


def done(step_id: str, **changes: Any) -> StepFacts:
    """Facts of a step that completed last time and has not changed since."""
    facts: dict[str, Any] = {
        "id": step_id,
        "previous_status": "completed",
        "output_present": True,
        "spec_hash": f"sha256:spec-{step_id}",
        "previous_spec_hash": f"sha256:spec-{step_id}",
    }
    return StepFacts(**{**facts, **changes})


def actions(decisions: list[Decision]) -> list[tuple[str, Action, str]]:
    return [(decision.id, decision.action, decision.reason) for decision in decisions]


def test_new_run_runs_every_step() -> None:
    decisions = plan_run([StepFacts(id="a"), StepFacts(id="b")])

    assert actions(decisions) == [
        ("a", Action.RUN, "not run yet"),
        ("b", Action.RUN, "not run yet"),
    ]


def test_decisions_are_numbered_from_one() -> None:
    decisions = plan_run([StepFacts(id="a"), StepFacts(id="b")])

    assert [decision.number for decision in decisions] == [1, 2]


def test_completed_unchanged_steps_are_reused() -> None:
    decisions = plan_run([done("a"), done("b", depends_on=frozenset({"a"}))])

    assert actions(decisions) == [
        ("a", Action.REUSE, "completed, unchanged"),
        ("b", Action.REUSE, "completed, unchanged"),
    ]


def test_disabled_step_is_skipped() -> None:
    decisions = plan_run([done("a"), StepFacts(id="b", enabled=False), done("c")])

    assert actions(decisions)[1] == ("b", Action.SKIP, "disabled in the config")
    assert decisions[2].action is Action.REUSE


def test_from_step_forces_the_steps_it_names_to_run_and_reuses_the_rest() -> None:
    decisions = plan_run([done("a"), done("b"), done("c"), done("d")], from_step={"b", "d"})

    assert actions(decisions) == [
        ("a", Action.REUSE, "not downstream of --from-step"),
        ("b", Action.RUN, "--from-step"),
        ("c", Action.REUSE, "not downstream of --from-step"),
        ("d", Action.RUN, "--from-step"),
    ]


def test_from_step_reuses_earlier_completed_steps_even_when_changed() -> None:
    changed = StepFacts(
        id="a",
        previous_status="completed",
        output_present=True,
        spec_hash="sha256:new",
        previous_spec_hash="sha256:old",
    )
    never_run = StepFacts(id="b")

    decisions = plan_run([changed, never_run, done("c")], from_step={"c"})

    assert actions(decisions) == [
        ("a", Action.REUSE, "not downstream of --from-step"),
        ("b", Action.RUN, "not run yet"),
        ("c", Action.RUN, "--from-step"),
    ]


def test_to_step_stops_every_step_it_does_not_name() -> None:
    steps = [StepFacts(id="a"), StepFacts(id="b"), StepFacts(id="c")]

    decisions = plan_run(steps, to_step={"a", "c"})

    assert actions(decisions) == [
        ("a", Action.RUN, "not run yet"),
        ("b", Action.STOP, "not needed by --to-step"),
        ("c", Action.RUN, "not run yet"),
    ]


def test_changed_config_reruns_the_step_and_its_dependants_only() -> None:
    decisions = plan_run(
        [
            done("a", spec_hash="sha256:edited"),
            done("b", depends_on=frozenset({"a"})),
            done("c"),
        ]
    )

    assert actions(decisions) == [
        ("a", Action.RUN, "its config changed"),
        ("b", Action.RUN, "upstream step a re-runs"),
        ("c", Action.REUSE, "completed, unchanged"),
    ]


def test_rerun_propagates_through_a_chain_of_dependants() -> None:
    decisions = plan_run(
        [
            done("a", spec_hash="sha256:edited"),
            done("b", depends_on=frozenset({"a"})),
            done("c", depends_on=frozenset({"b"})),
        ]
    )

    assert actions(decisions)[2] == ("c", Action.RUN, "upstream step b re-runs")


def test_edited_upstream_output_reruns_only_its_reader() -> None:
    decisions = plan_run(
        [
            done("a"),
            done(
                "b",
                depends_on=frozenset({"a"}),
                previous_reads={"a": "sha256:before-edit"},
                current_reads={"a": "sha256:after-edit"},
            ),
            done(
                "c", previous_reads={INPUT_KEY: "sha256:in"}, current_reads={INPUT_KEY: "sha256:in"}
            ),
        ]
    )

    assert actions(decisions) == [
        ("a", Action.REUSE, "completed, unchanged"),
        ("b", Action.RUN, "the output of a changed"),
        ("c", Action.REUSE, "completed, unchanged"),
    ]


def test_changed_input_reruns_a_step_that_read_it() -> None:
    decisions = plan_run(
        [
            done(
                "a",
                previous_reads={INPUT_KEY: "sha256:old"},
                current_reads={INPUT_KEY: "sha256:new"},
            )
        ]
    )

    assert actions(decisions) == [("a", Action.RUN, "the input changed")]


def test_missing_read_output_counts_as_changed() -> None:
    decisions = plan_run(
        [done("a"), done("b", previous_reads={"a": "sha256:x"}, current_reads={"a": None})]
    )

    assert actions(decisions)[1] == ("b", Action.RUN, "the output of a changed")


def test_missing_output_file_reruns_the_step() -> None:
    decisions = plan_run([done("a", output_present=False)])

    assert actions(decisions) == [("a", Action.RUN, "its output file is missing")]


def test_failed_step_runs_again() -> None:
    decisions = plan_run([done("a"), done("b", previous_status="failed")])

    assert actions(decisions) == [
        ("a", Action.REUSE, "completed, unchanged"),
        ("b", Action.RUN, "failed last time"),
    ]


def test_step_interrupted_while_running_runs_again() -> None:
    decisions = plan_run([done("a", previous_status="running")])

    assert actions(decisions) == [("a", Action.RUN, "interrupted while running")]
