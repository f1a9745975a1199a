"""What a step executor receives and returns.

Executors are plain async functions ``(step, env) -> StepOutcome``. They read earlier outputs
through ``env`` and return a value; the runner persists it. No executor touches the run store.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from stepline.errors import InputError
from stepline.processes import ProcessGroups
from stepline.providers.caller import LLMCaller
from stepline.spec import PipelineSpec

MIB = 1024 * 1024
MAX_INPUT_BYTES = 512 * MIB
MAX_WHOLE_INPUT_BYTES = 32 * MIB
"""Caps on the run's input file. Any input is hashed, checked and copied a chunk at a time and
``input.lines`` / ``input.records`` (JSON Lines, CSV) stream it, so the first cap only keeps a
mistaken path (a disk image, a database dump) from filling the work folder. Reading the input
whole (``input.text``, ``input.json``, ``ctx.input.text``, ``input.records`` over a JSON array)
holds it in memory, several times over once parsed, and no model's context takes even a few
MiB of prompt, so that has the smaller cap."""


def check_input_size(path: Path) -> None:
    """Refuse an input file over ``MAX_INPUT_BYTES`` before anything is copied or hashed."""
    size = path.stat().st_size
    if size > MAX_INPUT_BYTES:
        raise InputError(
            f"input file {path} is {size / MIB:,.0f} MiB; the largest input stepline takes is "
            f"{MAX_INPUT_BYTES // MIB} MiB",
            hint="split it into several inputs (one run each)",
        )


@dataclass(frozen=True)
class InputData:
    """The run's input: ``path`` is the copy inside the run folder, ``name`` the original's.

    The text is read, and parsed as JSON, only when something first asks for it: a fan-out over
    ``input.lines`` streams the file instead, so a million-line input never sits in memory.
    """

    path: Path
    name: str
    hash: str

    @cached_property
    def text(self) -> str:
        """The whole input (checked as UTF-8 when the run started), up to its cap."""
        size = self.path.stat().st_size
        if size > MAX_WHOLE_INPUT_BYTES:
            raise InputError(
                f"input file {self.name} is {size / MIB:,.1f} MiB, too large to read whole "
                f"(input.text, input.json, input.records over a JSON array: at most "
                f"{MAX_WHOLE_INPUT_BYTES // MIB} MiB)",
                hint="fan out over it with for_each: input.lines, or input.records over "
                "JSON Lines or CSV, which read it a line at a time",
            )
        return self.path.read_text(encoding="utf-8")

    @cached_property
    def _parsed(self) -> tuple[bool, Any]:
        try:
            return True, json.loads(self.text)
        except json.JSONDecodeError:
            return False, None

    @property
    def is_json(self) -> bool:
        return self._parsed[0]

    @property
    def json(self) -> Any:
        """The input parsed as JSON; None when it is not JSON (see ``is_json``)."""
        return self._parsed[1]

    def template_value(self) -> InputView:
        return InputView(self)


class InputView:
    """``input`` in templates: ``text``, ``path``, ``name`` and, for JSON input, ``json``.

    Attributes rather than a dict, so the text is read only by a template that uses it.
    """

    def __init__(self, data: InputData) -> None:
        self._data = data

    @property
    def text(self) -> str:
        return self._data.text

    @property
    def path(self) -> str:
        return str(self._data.path)

    @property
    def name(self) -> str:
        return self._data.name

    @property
    def json(self) -> Any:
        if not self._data.is_json:
            raise AttributeError("json")  # StrictUndefined: "input has no attribute json"
        return self._data.json


@dataclass(frozen=True)
class Item:
    """One element a fan-out step runs over: its value, its place in the list, its stable key."""

    value: Any
    index: int
    key: str


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
