"""What each step reads, found by parsing its templates before step 1 runs.

This is where a typo such as ``{{ steps.extarct }}`` or a reference to a later step becomes a
config error instead of a failure an hour into a run. The same analysis tells the planner which
outputs a step depends on, so editing one output re-runs only the steps that read it.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from stepline.errors import InputError, SpecError
from stepline.expressions import one_expression
from stepline.spec import ITEM_SOURCES, LLMStep, PipelineSpec, PythonStep, ShellStep, StepBase
from stepline.spec.loader import closest_keys
from stepline.templates import (
    CONTEXT_NAMES,
    INPUT_ATTRIBUTES,
    ITEM_NAMES,
    ReferenceSet,
    references,
)


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
    # Fan-out steps: the steps that reach items only through ``for_each`` (an item does not
    # depend on the rest of the list), whether the input does too (``input.lines``/``records``
    # and no other use of it), and whether templates use ``item_index``.
    item_source: frozenset[str] = frozenset()
    input_via_items: bool = False
    uses_item_index: bool = False
    # The variables an item's result depends on: those its templates read, but not when and
    # filter (which decide which items run, not what each gives).
    item_vars: frozenset[str] = frozenset()


def template_fields(step: StepBase) -> Iterator[tuple[str, str]]:
    """Each templated field of a step as (field name, template source)."""
    if step.when is not None:
        yield "when", step.when
    if step.for_each is not None and step.for_each not in ITEM_SOURCES:
        yield "for_each", step.for_each
    if step.filter is not None:
        yield "filter", step.filter
    if step.item_key is not None:
        yield "item_key", step.item_key
    if isinstance(step, LLMStep):
        if step.system is not None:
            yield "system", step.system
        if step.prompt is not None:
            yield "prompt", step.prompt
        if step.cached_prefix is not None:
            yield "cached_prefix", step.cached_prefix
    elif isinstance(step, ShellStep):
        for index, argument in enumerate(step.command):
            yield f"command[{index}]", argument
        for key, value in step.env.items():
            yield f"env.{key}", value
        if step.cwd is not None:
            yield "cwd", step.cwd


def analyse_spec(
    spec: PipelineSpec,
    variables: Mapping[str, object],
    *,
    given: Collection[str] | None = None,
) -> dict[str, StepNeeds]:
    """Check every template of ``spec`` and return what each step needs, by step id.

    ``given`` names the variables set from outside the config this time (``--set``,
    ``stepline.run(variables=...)``); each must be one the config knows (see
    ``check_given_vars``). None means every name of ``variables`` not declared under
    ``vars:``, which is what ``validate`` and a new run pass; a resume passes only the names
    of its own command line, so variables recorded by an earlier command are never refused.
    """
    step_refs = [_located(spec, index) for index in range(len(spec.steps))]
    names = set(variables) - set(spec.vars) if given is None else given
    check_given_vars(spec, step_refs, names)  # before a missing one: "topk" may be "top_k"
    needs: dict[str, StepNeeds] = {}
    for step, refs in zip(spec.steps, step_refs, strict=True):
        _check_vars(step, refs, variables)
        needs[step.id] = StepNeeds(
            steps=frozenset(refs.steps),
            input="input" in refs.names
            or isinstance(step, PythonStep)
            or step.for_each in ITEM_SOURCES,
            reads_everything=isinstance(step, PythonStep)
            or refs.uses_run_dir
            or refs.dynamic_steps,
            vars=frozenset(variables)
            if isinstance(step, PythonStep) or refs.dynamic_vars
            else frozenset(refs.vars),
            **_item_needs(step, variables),
        )
    return needs


def _located(spec: PipelineSpec, index: int) -> ReferenceSet:
    """``_checked_references``, with a problem pointing at the step's line in the config."""
    try:
        return _checked_references(spec, index)
    except SpecError as exc:
        where = spec.where(spec.steps[index].id)
        if where is not None and not exc.message.startswith(where.rsplit(":", 1)[0]):
            exc.message = f"{where}: {exc.message}"
        raise


def _checked_references(spec: PipelineSpec, index: int) -> ReferenceSet:
    """What the templates of step ``index`` read, once each is checked against the config."""
    step = spec.steps[index]
    refs = ReferenceSet()
    for field_name, source in template_fields(step):
        found = references(source, where=f'step "{step.id}" {field_name}')
        _check_input(step, field_name, found.input_attributes)
        refs.add(found)
    _check_names(step, refs)
    _check_item_free(step)
    _check_steps(spec, index, refs)
    _check_streaming(spec, index)
    return refs


def _item_needs(step: StepBase, variables: Mapping[str, object]) -> dict[str, Any]:
    """What each item of a fan-out step depends on, beyond its own value (see StepNeeds)."""
    if step.for_each is None:
        return {}
    # others: what an item's own templates read (for_each, when and filter pick which items
    # run, not what each gives); valued adds for_each's variables, so an item fingerprint
    # made before when and filter existed stays the same and an upgrade redoes nothing
    others, valued = ReferenceSet(), ReferenceSet()
    for field_name, source in template_fields(step):
        if field_name in ("when", "filter"):
            continue
        found = references(source, where=f'step "{step.id}" {field_name}')
        valued.add(found)
        if field_name != "for_each":
            others.add(found)
    is_python = isinstance(step, PythonStep)
    item_needs: dict[str, Any] = {
        "uses_item_index": is_python or "item_index" in others.names,
        "item_vars": frozenset(variables)
        if is_python or valued.dynamic_vars
        else frozenset(valued.vars),
    }
    if step.for_each in ITEM_SOURCES:
        item_needs["input_via_items"] = "input" not in others.names and not is_python
        return item_needs
    refs = references(step.for_each, where=f'step "{step.id}" for_each')
    if refs.names & ITEM_NAMES:
        raise SpecError(
            f'step "{step.id}": for_each cannot use {sorted(refs.names & ITEM_NAMES)[0]}',
            hint="for_each gives the list; item is each element of it",
        )
    # A list that the other templates also read (or may read) is a dependency of every item.
    reads_anything = others.dynamic_steps or others.uses_run_dir
    read_whole = refs.steps if reads_anything else refs.steps & others.steps
    item_needs["item_source"] = frozenset(refs.steps - read_whole)
    return item_needs


def _check_input(step: StepBase, field_name: str, attributes: frozenset[str]) -> None:
    """``input.records`` in a template is a mistake for ``for_each: input.records``; any other
    unknown attribute is a typo. Either is a config error now, not a Jinja error mid-run."""
    for name in sorted(attributes - set(INPUT_ATTRIBUTES)):
        where = f'step "{step.id}" {field_name}'
        if name in ("lines", "records"):
            raise SpecError(
                f"{where}: input.{name} is not a template value",
                hint=f"to run the step once per {name[:-1]} of the input, write "
                f"for_each: input.{name} (braces or not); templates then see each as item",
            )
        close = difflib.get_close_matches(name, INPUT_ATTRIBUTES, n=1)
        raise SpecError(
            f'{where}: input has no attribute "{name}"'
            + (f'; did you mean "{close[0]}"?' if close else ""),
            hint="input has " + ", ".join(INPUT_ATTRIBUTES[:-1]) + " and, for JSON input, json",
        )


def _check_names(step: StepBase, refs: ReferenceSet) -> None:
    known = CONTEXT_NAMES | ITEM_NAMES if step.fans_out else CONTEXT_NAMES
    for name in sorted(refs.names - known):
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = "templates can use input, steps, run and vars"
        if name in ITEM_NAMES:
            hint = "item, item_index and item_key exist in steps with for_each"
        raise SpecError(
            f'step "{step.id}": unknown template variable "{name}"'
            + (f'; did you mean "{close[0]}"?' if close else ""),
            hint=hint,
        )


def _check_streaming(spec: PipelineSpec, index: int) -> None:
    """``stream_items`` needs ``for_each: "{{ steps.<previous fan-out step> }}"``, and nothing
    else in the step may read that list (it exists only item by item while both run)."""
    step = spec.steps[index]
    if not step.stream_items:
        return
    previous = spec.steps[index - 1] if index else None
    match = one_expression(step.for_each or "")
    if previous is None or match is None or match.group(1).strip() != f"steps.{previous.id}":
        raise SpecError(
            f'step "{step.id}": stream_items needs for_each to be the output of the step '
            'just before it, e.g. for_each: "{{ steps.%s }}"'
            % (previous.id if previous else "previous"),
        )
    if not previous.fans_out:
        raise SpecError(
            f'step "{step.id}": stream_items needs step "{previous.id}" to fan out (for_each)',
            hint="items can only stream from a step that produces them one by one",
        )
    if previous.pause:
        raise SpecError(
            f'step "{step.id}": stream_items cannot follow step "{previous.id}", which pauses',
            hint="a pause waits for the whole output; remove one of the two",
        )
    if step.group_size is not None:
        raise SpecError(
            f'step "{step.id}": group_size cannot be used with stream_items',
            hint="items that stream in arrive in any order, so their groups would change "
            "from run to run; group them in the step before",
        )
    uses_index = any(
        "item_index" in references(source, where="").names for _, source in template_fields(step)
    )
    if previous.flatten and uses_index:
        raise SpecError(
            f'step "{step.id}" streams the items of "{previous.id}", which flattens its '
            "results: item_index is unknown while they stream in",
            hint="use item_key, or remove stream_items",
        )
    conditional = next((s for s in (previous, step) if s.when is not None), None)
    if conditional is not None:
        raise SpecError(
            f'step "{step.id}": stream_items cannot be used with when: (on step '
            f'"{conditional.id}")',
            hint="two steps that stream items start together; put the condition on a step "
            "before them",
        )
    for field_name, source in template_fields(step):
        if field_name != "for_each" and previous.id in references(source, where="").steps:
            raise SpecError(
                f'step "{step.id}" {field_name} reads steps.{previous.id}, whose items stream '
                "in one by one; use item instead",
            )


def _check_item_free(step: StepBase) -> None:
    """``when`` decides for the whole step, and ``cached_prefix`` is the part every item
    shares: neither can read an item."""
    fields = {"when": (step.when, "when decides whether the whole step runs; to leave out "
                       "some items, use filter:")}  # fmt: skip
    if isinstance(step, LLMStep):
        fields["cached_prefix"] = (
            step.cached_prefix,
            "cached_prefix is the part every item shares; put per-item text in prompt",
        )
    for name, (source, hint) in fields.items():
        used = references(source, where=f'step "{step.id}" {name}').names if source else set()
        if used & ITEM_NAMES:
            raise SpecError(
                f'step "{step.id}": {name} cannot use {sorted(used & ITEM_NAMES)[0]}', hint=hint
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


def check_given_vars(
    spec: PipelineSpec, step_refs: Collection[ReferenceSet], given: Collection[str]
) -> None:
    """Refuse a ``--set`` name the config neither declares under ``vars:`` nor reads in a
    template: ``--set topk=3`` for ``top_k`` would otherwise be silently ignored. A template
    that reads ``vars`` as a whole (``vars | tojson``, ``vars[key]``) may read any name. A
    Python step may too, but only when it runs, so an undeclared name is refused with it as
    well: declaring it under ``vars:`` is how a new one is passed on purpose."""
    if any(refs.dynamic_vars for refs in step_refs):
        return
    known = set(spec.vars).union(*(refs.vars for refs in step_refs))
    for name in sorted(set(given) - known):
        close = closest_keys(name, sorted(known))
        config = str(spec.source_path) if spec.source_path else "the config"
        raise InputError(
            f'--set {name}: {config} has no variable "{name}" (none under vars:, and no '
            f"template reads vars.{name})" + (f'; did you mean "{close[0]}"?' if close else ""),
            hint=_given_vars_hint(spec, sorted(known)),
        )


def _given_vars_hint(spec: PipelineSpec, known: list[str]) -> str:
    variables = f"its variables: {', '.join(known)}" if known else "it uses no variables"
    if any(isinstance(step, PythonStep) for step in spec.steps):
        return (
            f"check the spelling ({variables}); to pass a new variable to a Python step "
            "(ctx.vars), declare it under vars: in the config with a default"
        )
    return f"check the spelling ({variables}), or remove the --set"
