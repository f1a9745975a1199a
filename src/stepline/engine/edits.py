"""Outputs a person edits at a pause point: an edit is taken only if the steps after it can
rely on it as they could on the reply it replaces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stepline.engine.fanout import is_collected_failure
from stepline.errors import RunStoreError
from stepline.spec import LLMStep, StepBase
from stepline.steps.structured import schema_problem


def check_edit(step: StepBase, path: Path, value: Any) -> None:
    """Refuse an output a person edited at a pause point (``path``, read as ``value``) that
    breaks the step's schema, like broken JSON: the steps after it were written for what the
    schema promises. A fan-out output is checked reply by reply; a flattened one is not (its
    elements are parts of replies, not replies), nor one stored as JSON Lines (read lazily)."""
    if not isinstance(step, LLMStep) or step.output_schema is None:
        return
    if step.fans_out:  # each item's reply was checked; collected failures are not replies
        if not isinstance(value, list) or step.flatten:
            return
        collected = step.on_item_error == "collect"
        replies = [
            (f"item {number} ", reply)
            for number, reply in enumerate(value, start=1)
            if not (collected and is_collected_failure(reply))
        ]
    else:
        replies = [("", value)]
    for where, reply in replies:
        problem = schema_problem(reply, step.output_schema)
        if problem is not None:
            raise RunStoreError(
                f"{path}: {where}{problem.message}",
                hint="fix the edit to match the step's schema, or stop (q) and re-run the "
                "step with --from-step",
            )
