"""The run as a graph: what each step waits for, from its templates and ``needs:``, and what
the dry run and ``--from-step`` / ``--to-step`` read from it (pure: no run)."""

from __future__ import annotations

import textwrap

import pytest

from stepline.engine.graph import StepGraph, step_graph
from stepline.engine.references import analyse_spec
from stepline.errors import SpecError
from stepline.spec import parse_spec


def graph_of(config: str) -> StepGraph:
    spec = parse_spec(textwrap.dedent(config))
    return step_graph(spec, analyse_spec(spec, dict(spec.vars)))


NOTES = """
name: notes
llm: {model: claude-haiku-4-5}
steps:
  - {id: context, kind: llm, prompt: "Context of {{ input.text }}"}
  - {id: extract, kind: llm, prompt: "Items in {{ input.text }} given {{ steps.context }}"}
  - {id: risks, kind: llm, prompt: "Risks of {{ steps.extract }}"}
  - {id: questions, kind: llm, prompt: "Questions about {{ steps.extract }}"}
  - {id: report, kind: llm, prompt: "{{ steps.risks }} {{ steps.questions }}"}
"""


def test_an_llm_step_waits_only_for_the_steps_its_templates_read() -> None:
    graph = graph_of(NOTES)

    assert graph.dependencies == {
        "context": frozenset(),
        "extract": {"context"},
        "risks": {"extract"},
        "questions": {"extract"},
        "report": {"risks", "questions"},
    }
    assert graph.waits_for_all == frozenset()


def test_independent_steps_share_a_wave_and_the_critical_path_is_the_longest_chain() -> None:
    graph = graph_of(NOTES)

    assert graph.waves() == [["context"], ["extract"], ["risks", "questions"], ["report"]]
    assert graph.critical_path() == ["context", "extract", "risks", "report"]
    # a slow "questions" puts it on the path instead
    slow = graph.critical_path(cost={"questions": 30.0})
    assert slow == ["context", "extract", "questions", "report"]


def test_steps_left_out_count_as_done_in_the_waves() -> None:
    graph = graph_of(NOTES)

    assert graph.waves(among={"risks", "questions", "report"}) == [
        ["risks", "questions"],
        ["report"],
    ]
    assert graph.critical_path(among={"report"}) == ["report"]
    assert graph.waves(among=set()) == [] and graph.critical_path(among=set()) == []


def test_downstream_and_upstream_follow_the_graph_through_other_steps() -> None:
    graph = graph_of(NOTES)

    assert graph.downstream("extract") == {"risks", "questions", "report"}
    assert graph.downstream("report") == frozenset()
    assert graph.upstream("risks") == {"extract", "context"}
    assert graph.upstream("context") == frozenset()


def test_python_and_shell_steps_without_needs_wait_for_every_step_before_them() -> None:
    graph = graph_of(
        """
        name: mixed
        llm: {model: claude-haiku-4-5}
        steps:
          - {id: a, kind: llm, prompt: "A"}
          - {id: b, kind: llm, prompt: "B"}
          - {id: tally, kind: python, function: "os.path:basename"}
          - {id: c, kind: llm, prompt: "C"}
          - {id: copy, kind: shell, command: [cat, "{{ input.path }}"]}
        """
    )

    assert graph.dependencies["tally"] == {"a", "b"}
    assert graph.dependencies["c"] == frozenset()  # an LLM step reads only its templates
    assert graph.dependencies["copy"] == {"a", "b", "tally", "c"}
    assert graph.waits_for_all == {"tally", "copy"}


def test_needs_replaces_waiting_for_all_and_adds_to_what_templates_read() -> None:
    graph = graph_of(
        """
        name: needs
        llm: {model: claude-haiku-4-5}
        steps:
          - {id: a, kind: llm, prompt: "A"}
          - {id: b, kind: llm, prompt: "B"}
          - {id: tally, kind: python, function: "os.path:basename", needs: [a]}
          - {id: alone, kind: python, function: "os.path:basename", needs: []}
          - {id: c, kind: llm, prompt: "C {{ steps.b }}", needs: [tally]}
          - {id: copy, kind: shell, command: [cat, "{{ input.path }}"], needs: [c]}
        """
    )

    assert graph.dependencies["tally"] == {"a"}
    assert graph.dependencies["alone"] == frozenset()
    assert graph.dependencies["c"] == {"b", "tally"}
    assert graph.dependencies["copy"] == {"c"}
    assert graph.waits_for_all == frozenset()


def test_a_template_that_may_read_any_output_waits_for_every_step_before_it() -> None:
    graph = graph_of(
        """
        name: dynamic
        llm: {model: claude-haiku-4-5}
        vars: {which: a}
        steps:
          - {id: a, kind: llm, prompt: "A"}
          - {id: b, kind: llm, prompt: "B"}
          - {id: pick, kind: llm, prompt: "{{ steps[vars.which] }}"}
          - {id: list, kind: shell, command: [ls, "{{ run.dir }}"], needs: []}
        """
    )

    assert graph.dependencies["pick"] == {"a", "b"}
    assert graph.dependencies["list"] == {"a", "b", "pick"}  # needs: cannot narrow run.dir


NEEDS_PROBLEMS = [
    ("[b]", 'step "a" needs: "b" runs later'),
    ("[a]", 'step "a" needs: a step cannot need itself'),
    ("[frist]", 'step "a" needs: there is no step "frist"; did you mean "first"?'),
    ("[first, first]", 'step "a" needs: "first" is listed twice'),
]


@pytest.mark.parametrize(("needs", "expected"), NEEDS_PROBLEMS)
def test_a_needs_entry_that_is_not_an_earlier_step_is_refused_with_its_line(
    needs: str, expected: str
) -> None:
    config = f"""\
name: bad
steps:
  - {{id: first, kind: shell, command: [echo, one]}}
  - id: a
    kind: shell
    command: [echo, two]
    needs: {needs}
  - {{id: b, kind: shell, command: [echo, three]}}
"""
    with pytest.raises(SpecError) as raised:
        parse_spec(config)

    assert raised.value.message == f"<config>:7: {expected}"


def test_needs_must_be_a_list_of_step_ids() -> None:
    config = "name: bad\nsteps:\n  - {id: a, kind: shell, command: [echo], needs: a}\n"

    with pytest.raises(SpecError) as raised:
        parse_spec(config)

    assert raised.value.message.startswith("<config>:3: ")
    assert "needs" in raised.value.message
