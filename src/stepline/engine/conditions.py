"""``when:``: whether a step runs, asked as it is about to start, and asked already when the
run is planned if everything the condition reads is on disk and stays as it is.

Asking at plan time is what lets a resume (and its dry run) say "when now gives false" for a
step whose input changed, instead of running what it would then skip. The runner asks again
whenever the plan could not know (a step the condition reads runs first), with the outputs
the step sees.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stepline.errors import StepLineError
from stepline.spec import StepBase
from stepline.steps import InputData
from stepline.steps.base import template_context
from stepline.store.rundir import RunDir
from stepline.store.state import StepState, StepStatus
from stepline.templates import evaluate, references, truthy


def holds(step: StepBase, context: dict[str, Any]) -> bool:
    """Whether ``step``'s ``when`` is true in ``context`` (``templates.truthy``: ``"false"``
    is false); a template error is a ``SpecError`` naming the step."""
    assert step.when is not None
    return truthy(evaluate(step.when, context, where=f'step "{step.id}" when'))


def condition_reads(step: StepBase) -> frozenset[str] | None:
    """The steps ``step``'s condition reads, or None when it reads them by a computed name
    or passes the run folder on (it may read any)."""
    if step.when is None:
        return frozenset()
    refs = references(step.when, where=f'step "{step.id}" when')
    if refs.dynamic_steps or refs.uses_run_dir:
        return None
    return refs.steps


def known_now(
    step: StepBase,
    records: Mapping[str, StepState],
    run_dir: RunDir,
    input: InputData,
    variables: Mapping[str, Any],
) -> bool | None:
    """What ``step``'s condition gives with the outputs on disk now; None when it cannot be
    known before the run (a step it reads has no output yet, or the condition fails: the
    step will fail with that error when it is about to start)."""
    reads = condition_reads(step)
    if step.when is None or reads is None:
        return None
    outputs: dict[str, Any] = {}
    for name in reads:
        record = records[name]
        if record.status == StepStatus.SKIPPED and record.when is False:
            outputs[name] = None  # what a later template reads of a skipped step
        elif record.status == StepStatus.COMPLETED and record.output:
            try:
                outputs[name] = run_dir.read_output(record.output)
            except StepLineError:
                return None
        else:
            return None
    context = template_context(input, outputs, run_dir.run_id, run_dir.path.resolve(), variables)
    try:
        return holds(step, context)
    except StepLineError:
        return None
