"""What a step executor receives and returns.

Executors are plain async functions ``(step, env) -> StepOutcome``. They read earlier outputs
through ``env`` and return a value; the runner persists it. No executor touches the run store.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stepline.context import InputData, Item
from stepline.processes import ProcessGroups
from stepline.providers.caller import LLMCaller
from stepline.spec import PipelineSpec

if TYPE_CHECKING:
    from stepline.workers.placement import Executors


@dataclass(frozen=True)
class StepEnvironment:
    """Everything a step may use: the spec, the input, earlier outputs, vars, the LLM caller."""

    spec: PipelineSpec
    run_id: str
    run_dir: Path
    input: InputData
    outputs: Mapping[str, Any]  # of the steps this one waits for
    vars: Mapping[str, Any]
    llm: LLMCaller
    log: logging.Logger
    item: Item | None = None  # set for each run of a fan-out step
    # Earlier steps it does not wait for (its needs: leave them out): a Python step that
    # reads one fails, since that step may not have run yet.
    undeclared: frozenset[str] = frozenset()
    processes: ProcessGroups | None = None  # where shell steps note their process groups
    executors: Executors | None = None  # where Python and shell steps' attempts run

    def template_context(self) -> dict[str, Any]:
        context = template_context(self.input, self.outputs, self.run_id, self.run_dir, self.vars)
        if self.item is not None:
            context.update(item_context(self.item))
        return context

    @property
    def item_key(self) -> str | None:
        return self.item.key if self.item is not None else None


def item_context(item: Item) -> dict[str, Any]:
    """``item``, ``item_index`` and ``item_key`` for a fan-out step's templates."""
    return {"item": item.value, "item_index": item.index, "item_key": item.key}


def template_context(
    input: InputData,
    outputs: Mapping[str, Any],
    run_id: str,
    run_dir: Path,
    variables: Mapping[str, Any],
) -> dict[str, Any]:
    """What templates see: ``input``, ``steps`` (earlier outputs), ``run`` and ``vars``."""
    return {
        "input": input.template_value(),
        "steps": dict(outputs),
        "run": {"id": run_id, "dir": str(run_dir)},
        "vars": dict(variables),
    }


@dataclass
class StepOutcome:
    """A step's result. ``read_steps`` is set by steps that discover their reads as they run."""

    value: Any
    read_steps: frozenset[str] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
