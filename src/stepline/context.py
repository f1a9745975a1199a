"""What a Python step's function receives: the run's input, earlier outputs, its item.

Standard library only (beside ``stepline.errors``): worker processes and cluster workers import
this module to build the same ``StepContext`` a function gets in the driver, and must not pay
for the engine's imports (pydantic, the SDKs) on every start.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from stepline.errors import InputError, StepFailed
from stepline.hashing import as_plain_json

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


class UndeclaredRead(Exception):
    """A Python step read the output of an earlier step it does not wait for (not in its
    ``needs:``). Not a ``KeyError``: ``ctx.steps.get(name)`` must not hide it as None."""

    def __init__(self, step_id: str, read: str) -> None:
        super().__init__(f'reads ctx.steps["{read}"], but "{read}" is not in its needs:')
        self.hint = (
            f'add "{read}" to the needs: of step "{step_id}"; it may run at the same time '
            f'as "{read}", or before it'
        )


class RecordingMapping(Mapping[str, Any]):
    """Earlier step outputs, remembering which ones were read; reading one of the steps in
    ``undeclared`` (earlier, but not waited for) raises ``UndeclaredRead``."""

    def __init__(
        self, outputs: Mapping[str, Any], step_id: str, undeclared: frozenset[str]
    ) -> None:
        self._outputs = outputs
        self._step_id = step_id
        self._undeclared = undeclared
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        if key in self._undeclared:
            raise UndeclaredRead(self._step_id, key)
        if key not in self._outputs:
            known = ", ".join(self._outputs) or "none yet"
            raise KeyError(f"no output of step {key!r} (outputs available: {known})")
        self.read.add(key)
        return self._outputs[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._outputs)

    def __len__(self) -> int:
        return len(self._outputs)


@dataclass(frozen=True)
class StepContext:
    """What a Python step function receives as its only argument."""

    step_id: str
    input: InputData
    steps: Mapping[str, Any]
    vars: Mapping[str, Any]
    run_id: str
    run_dir: Path
    log: logging.Logger
    item: Any = None  # in a fan-out step: this run's item, its index and its key
    item_index: int | None = None
    item_key: str | None = None


def step_logger(step_id: str, log: Callable[[str, str], None]) -> logging.Logger:
    """``ctx.log`` for a step: each record goes to ``log(message, level)``, which the runner
    turns into a ``log`` event in events.jsonl."""
    logger = logging.getLogger(f"stepline.step.{step_id}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.handlers = [_StepLogHandler(log)]
    return logger


class _StepLogHandler(logging.Handler):
    def __init__(self, log: Callable[[str, str], None]) -> None:
        super().__init__()
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        self._log(record.getMessage(), record.levelname.lower())


def item_fields(item: Item | None) -> dict[str, Any]:
    """A ``StepContext``'s ``item``, ``item_index`` and ``item_key`` (none outside a fan-out)."""
    if item is None:
        return {}
    return {"item": item.value, "item_index": item.index, "item_key": item.key}


def as_json_value(step_id: str, function: str, value: Any) -> Any:
    """The value as it will read back from its JSON file (int dict keys become strings)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False, default=as_plain_json))
    except (TypeError, ValueError) as exc:
        raise StepFailed(
            step_id,
            f"{function} returned a value that is not JSON-serialisable ({exc})",
            hint="return dicts, lists, strings, numbers, booleans or None",
        ) from None
