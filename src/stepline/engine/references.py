"""What each step reads, found by parsing its templates before step 1 runs.

This is where a typo such as ``{{ steps.extarct }}`` or a reference to a later step becomes a
config error instead of a failure an hour into a run. The same analysis tells the planner which
outputs a step depends on, so editing one output re-runs only the steps that read it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from stepline.errors import InputError, SpecError
from stepline.spec import LLMStep, PipelineSpec, PythonStep, ShellStep, StepBase
from stepline.templates import CONTEXT_NAMES, ReferenceSet, references


@dataclass(frozen=True)
class StepNeeds:
    """The data one step reads.

    ``reads_everything`` is set when the step can read any earlier output without naming it:
    a Python step, a template that passes ``run.dir`` to a program, or ``steps[name]``.
    """

    steps: frozenset[str]
    input: bool
    reads_everything: bool
    vars: frozenset[str]


def template_fields(step: StepBase) -> Iterator[tuple[str, str]]:
    """Each templated field of a step as (field name, template source)."""
    if isinstance(step, LLMStep):
        if step.system is not None:
            yield "system", step.system
        if step.prompt is not None:
            yield "prompt", step.prompt
    elif isinstance(step, ShellStep):
        for index, argument in enumerate(step.command):
            yield f"command[{index}]", argument
        for key, value in step.env.items():
            yield f"env.{key}", value
        if step.cwd is not None:
            yield "cwd", step.cwd


def analyse_spec(spec: PipelineSpec, variables: Mapping[str, object]) -> dict[str, StepNeeds]:
    """Check every template of ``spec`` and return what each step needs, by step id."""
    needs: dict[str, StepNeeds] = {}
    for index, step in enumerate(spec.steps):
        refs = ReferenceSet()
        for field_name, source in template_fields(step):
            refs.add(references(source, where=f'step "{step.id}" {field_name}'))
        _check_names(step, refs)
        _check_steps(spec, index, refs)
        _check_vars(step, refs, variables)
        needs[step.id] = StepNeeds(
            steps=frozenset(refs.steps),
            input="input" in refs.names or isinstance(step, PythonStep),
            reads_everything=isinstance(step, PythonStep)
            or refs.uses_run_dir
            or refs.dynamic_steps,
            vars=frozenset(variables)
            if isinstance(step, PythonStep) or refs.dynamic_vars
            else frozenset(refs.vars),
        )
    return needs


def _check_names(step: StepBase, refs: ReferenceSet) -> None:
    for name in sorted(refs.names - CONTEXT_NAMES):
        close = difflib.get_close_matches(name, sorted(CONTEXT_NAMES), n=1)
        raise SpecError(
            f'step "{step.id}": unknown template variable "{name}"'
            + (f'; did you mean "{close[0]}"?' if close else ""),
            hint="templates can use input, steps, run and vars",
        )


def _check_steps(spec: PipelineSpec, index: int, refs: ReferenceSet) -> None:
    step = spec.steps[index]
    earlier = spec.step_ids[:index]
    for name in sorted(refs.steps):
        if name in earlier:
            if not spec.steps[earlier.index(name)].enabled:
                raise SpecError(
                    f'step "{step.id}" uses steps.{name}, but step "{name}" is disabled',
                    hint=f'enable "{name}" or remove the reference',
                )
            continue
        if name in spec.step_ids:
            raise SpecError(
                f'step "{step.id}" uses steps.{name}, but "{name}" runs later',
                hint="a step can only read the outputs of steps before it",
            )
        close = difflib.get_close_matches(name, earlier, n=1)
        raise SpecError(
            f'step "{step.id}" uses steps.{name}, but there is no step "{name}"'
            + (f'; did you mean "{close[0]}"?' if close else ""),
        )


def _check_vars(step: StepBase, refs: ReferenceSet, variables: Mapping[str, object]) -> None:
    for name in sorted(refs.vars - set(variables)):
        raise InputError(
            f'step "{step.id}" uses vars.{name}, which is not set',
            hint=f"pass --set {name}=VALUE or add it under vars: in the config",
        )
