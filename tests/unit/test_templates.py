"""Sandboxed templates, what they refer to, and the config-wide reference check.

Data (input, outputs, replies) must never be rendered as a template, the sandbox must refuse
Python internals, and a typo in a reference must be a config error before step 1 runs.
"""

from __future__ import annotations

from typing import Any

import pytest

from stepline.engine.references import StepNeeds, analyse_spec
from stepline.errors import InputError, SpecError
from stepline.spec import PipelineSpec, parse_spec
from stepline.templates import references, render


def show(source: str, **context: Any) -> str:
    return render(source, context, where='step "t" prompt')


# --------------------------------------------------------------------------------------------
# render


def test_dicts_and_lists_render_as_json() -> None:
    assert (
        show("{{ d }} {{ l }}", d={"word": "café"}, l=[1, "two"]) == '{"word": "café"} [1, "two"]'
    )


def test_json_filter_with_and_without_indent() -> None:
    assert show("{{ v | json }}", v='a "quoted" text') == '"a \\"quoted\\" text"'
    assert show("{{ v | json(2) }}", v={"a": 1}) == '{\n  "a": 1\n}'


def test_scalars_render_as_text() -> None:
    assert show("{{ n }} {{ b }}", n=3, b=True) == "3 True"


def test_trailing_newline_is_kept() -> None:
    assert show("line\n") == "line\n"


def test_undefined_name_is_a_spec_error_naming_where() -> None:
    with pytest.raises(
        SpecError, match=r"step \"t\" prompt: template error: 'missing' is undefined"
    ):
        show("{{ missing }}")


def test_undefined_attribute_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match=r'no key "absent" in this mapping \(it is empty\)'):
        show("{{ steps.absent }}", steps={})


@pytest.mark.parametrize(
    "data",
    ["{{ 7*7 }}", "{% if true %}x{% endif %}", "{0.__class__}", "{{ input.__class__ }}"],
)
def test_values_from_data_are_never_rendered(data: str) -> None:
    assert show("<{{ value }}>", value=data) == f"<{data}>"


def test_nested_data_is_not_rendered_either() -> None:
    assert show("{{ steps.a }}", steps={"a": {"text": "{{ 7*7 }}"}}) == '{"text": "{{ 7*7 }}"}'


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ value.__class__ }}",
        "{{ '{0.__class__}'.format(value) }}",
    ],
)
def test_sandbox_refuses_python_internals(source: str) -> None:
    with pytest.raises(SpecError, match="is unsafe"):
        show(source, value=1)


def test_step_named_like_a_dict_method_renders_its_output() -> None:
    assert show("{{ steps.items }}", steps={"items": "the output"}) == "the output"


# --------------------------------------------------------------------------------------------
# references


def refs(source: str) -> Any:
    return references(source, where='step "t" prompt')


def test_references_find_steps_by_attribute_and_by_key() -> None:
    found = refs('{{ steps.a }} and {{ steps["b"] }}')

    assert found.steps == {"a", "b"}
    assert found.dynamic_steps is False


def test_references_find_vars_and_top_level_names() -> None:
    found = refs("{{ vars.x }} {{ input.text }} {{ run.dir }}")

    assert found.vars == {"x"}
    assert found.names == {"vars", "input", "run"}
    assert found.uses_run_dir


def test_references_find_nested_attribute_of_a_step() -> None:
    assert refs("{{ steps.a.title }}").steps == {"a"}


@pytest.mark.parametrize(
    "source", ["{{ steps[name] }}", "{{ steps }}", "{% for s in steps %}{{ s }}{% endfor %}"]
)
def test_references_flag_dynamic_use_of_steps(source: str) -> None:
    assert refs(source).dynamic_steps is True


def test_loop_variables_are_not_references() -> None:
    assert refs("{% for i in range(2) %}{{ loop.index }}{% endfor %}").names == set()


def test_template_syntax_error_is_a_spec_error_with_the_line() -> None:
    with pytest.raises(SpecError, match=r'step "t" prompt: template syntax error on line 2'):
        refs("fine\n{{ broken(}\n")


# --------------------------------------------------------------------------------------------
# analyse_spec


def spec_with(steps: str, *, vars: str = "{}") -> PipelineSpec:
    return parse_spec(f"name: demo\nvars: {vars}\nsteps:\n{steps}")


def llm(step_id: str, prompt: str, extra: str = "") -> str:
    return f"  - id: {step_id}\n    kind: llm\n    model: m\n    prompt: '{prompt}'\n{extra}"


def test_unknown_step_reference_suggests_a_close_one() -> None:
    spec = spec_with(llm("extract", "{{ input.text }}") + llm("sum", "{{ steps.extarct }}"))

    with pytest.raises(SpecError) as caught:
        analyse_spec(spec, {})

    assert caught.value.message == (  # the line where step "sum" begins
        '<config>:8: step "sum" uses steps.extarct, but there is no step "extarct"; '
        'did you mean "extract"?'
    )


def test_reference_to_a_later_step_is_an_error() -> None:
    spec = spec_with(llm("a", "{{ steps.b }}") + llm("b", "{{ input.text }}"))

    with pytest.raises(SpecError, match='step "a" uses steps.b, but "b" runs later'):
        analyse_spec(spec, {})


def test_reference_to_a_disabled_step_is_an_error() -> None:
    spec = spec_with(llm("a", "x", "    enabled: false\n") + llm("b", "{{ steps.a }}"))

    with pytest.raises(SpecError, match='step "a" is disabled'):
        analyse_spec(spec, {})


def test_unknown_template_variable_suggests_a_close_one() -> None:
    spec = spec_with(llm("a", "{{ inptu.text }}"))

    with pytest.raises(SpecError, match='unknown template variable "inptu"; did you mean "input"'):
        analyse_spec(spec, {})


def test_unset_var_is_an_input_error_with_a_set_hint() -> None:
    spec = spec_with(llm("a", "Tone: {{ vars.tone }}"))

    with pytest.raises(InputError, match='step "a" uses vars.tone, which is not set') as caught:
        analyse_spec(spec, {})

    assert caught.value.hint is not None
    assert "--set tone=VALUE" in caught.value.hint


def test_var_set_in_the_config_or_on_the_command_line_is_accepted() -> None:
    spec = spec_with(llm("a", "Tone: {{ vars.tone }}"), vars="{tone: calm}")

    needs = analyse_spec(spec, dict(spec.vars))

    assert needs["a"].vars == {"tone"}


def test_errors_in_shell_command_arguments_are_found() -> None:
    spec = spec_with("  - id: s\n    kind: shell\n    command: [echo, '{{ stpes.a }}']\n")

    with pytest.raises(SpecError, match='unknown template variable "stpes"'):
        analyse_spec(spec, {})


def test_python_step_reads_everything() -> None:
    spec = spec_with(
        llm("a", "{{ input.text }}") + "  - id: p\n    kind: python\n    function: mod:fn\n",
        vars="{x: 1}",
    )

    needs = analyse_spec(spec, {"x": 1})["p"]

    assert needs == StepNeeds(
        steps=frozenset(), input=True, reads_everything=True, vars=frozenset({"x"})
    )


def test_run_dir_in_a_shell_command_reads_everything() -> None:
    spec = spec_with(
        llm("a", "{{ input.text }}")
        + "  - id: s\n    kind: shell\n    command: [ls, '{{ run.dir }}']\n"
    )

    needs = analyse_spec(spec, {})["s"]

    assert needs.reads_everything is True
    assert needs.input is False


def test_prompt_using_one_step_depends_only_on_it() -> None:
    spec = spec_with(
        llm("a", "{{ input.text }}") + llm("b", "{{ input.text }}") + llm("c", "{{ steps.a }}")
    )

    needs = analyse_spec(spec, {})

    assert needs["c"] == StepNeeds(
        steps=frozenset({"a"}), input=False, reads_everything=False, vars=frozenset()
    )
    assert needs["a"].input is True


def test_dynamic_step_access_reads_everything() -> None:
    spec = spec_with(llm("a", "x") + llm("b", "{% for k in steps %}{{ k }}{% endfor %}"))

    assert analyse_spec(spec, {})["b"].reads_everything is True


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("{{ steps.clean.nope }}", 'no key "nope" in this mapping (its keys are count, titles)'),
        ("{{ steps.clean.titles[3] }}", "no item 3 in a list of 2 item(s)"),
        ("{{ steps.clean.count.real.nope }}", 'int value has no "nope"'),
    ],
)
def test_a_missing_key_or_item_of_an_output_says_what_is_there(source: str, words: str) -> None:
    context = {"steps": {"clean": {"count": 2, "titles": ["a", "b"]}}}

    with pytest.raises(SpecError) as caught:
        render(source, context, where='step "t" prompt')

    assert words in caught.value.message
    assert "object" not in caught.value.message  # no Python type names such as 'dict object'
