"""Is every ``needs:`` entry a step that runs before the one that lists it? Checked at load.

``needs:`` only adds order (what a step reads is found in its templates), so a name that is
misspelt, names the step itself or a later one would otherwise make a step wait for ever or
for nothing. Each is a config error with the line of the entry.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from stepline.errors import SpecError
from stepline.spec.models import PipelineSpec


def check_needs(spec: PipelineSpec, lines: Mapping[tuple[Any, ...], int], label: str) -> None:
    """Raise a ``SpecError`` naming the line of the first ``needs:`` entry that is not an
    earlier step of ``spec``."""
    ids = spec.step_ids
    for index, step in enumerate(spec.steps):
        earlier = ids[:index]
        for position, name in enumerate(step.needs or []):
            line = lines.get(("steps", index, "needs", position)) or lines.get(
                ("steps", index, "needs")
            )
            where = f"{label}:{line}" if line else label
            problem, hint = _problem(step.id, name, earlier, ids, (step.needs or [])[:position])
            if problem is not None:
                raise SpecError(f'{where}: step "{step.id}" needs: {problem}', hint=hint)


def _problem(
    step_id: str, name: str, earlier: list[str], ids: list[str], before: list[str]
) -> tuple[str | None, str | None]:
    if name in before:
        return f'"{name}" is listed twice', "list each step once"
    if name == step_id:
        return "a step cannot need itself", "remove it from needs:"
    if name in ids and name not in earlier:
        return (
            f'"{name}" runs later',
            "a step can only need steps before it in the list; move one of the two",
        )
    if name not in ids:
        close = difflib.get_close_matches(name, earlier, n=1)
        return (
            f'there is no step "{name}"' + (f'; did you mean "{close[0]}"?' if close else ""),
            "steps before it: " + (", ".join(earlier) if earlier else "none"),
        )
    return None, None
