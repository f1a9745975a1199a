"""``kind: python``: call ``module:function`` with a ``StepContext``; its return is the output.

Modules next to the config file are importable. Sync functions run in a daemon thread so the
event loop (and Ctrl-C) stay responsive; async functions are awaited. The context records which
earlier outputs the function read, so editing an output it never touched does not re-run it.
"""

from __future__ import annotations

import asyncio
import difflib
import inspect
import json
import logging
import sysconfig
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stepline.errors import DoNotRetry, SpecError, StepFailed
from stepline.hashing import as_plain_json, hash_bytes
from stepline.spec import PythonStep
from stepline.steps.base import InputData, StepEnvironment, StepOutcome
from stepline.steps.modules import import_user_module
from stepline.threads import run_in_thread


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


def resolve_function(step: PythonStep, base_dir: Path) -> Callable[..., Any]:
    """Import ``module:function``; every failure is a ``SpecError`` naming the step."""
    module_name, _, attribute = step.function.partition(":")
    module = _import_module(step, module_name, base_dir)
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            names = [name for name in dir(target) if not name.startswith("_")]
            close = difflib.get_close_matches(part, names, n=1)
            raise SpecError(
                f'step "{step.id}": module "{module_name}" has no attribute "{attribute}"'
                + (f'; did you mean "{close[0]}"?' if close else "")
            )
        target = getattr(target, part)
    if not callable(target):
        raise SpecError(f'step "{step.id}": {step.function} is not callable')
    return target  # type: ignore[no-any-return]


def function_source_hash(step: PythonStep, base_dir: Path) -> str | None:
    """Hash of the module file that defines the function, so editing it re-runs the step."""
    module = _import_module(step, step.function.partition(":")[0], base_dir)
    source = getattr(module, "__file__", None)
    if not source:
        return None
    try:
        return hash_bytes(Path(source).read_bytes())
    except OSError:
        return None


async def run_python_step(step: PythonStep, env: StepEnvironment) -> StepOutcome:
    function = resolve_function(step, env.spec.base_dir)
    outputs = RecordingMapping(env.outputs, step.id, env.undeclared)
    context = StepContext(
        step_id=step.id,
        input=env.input,
        steps=outputs,
        vars=dict(env.vars),
        run_id=env.run_id,
        run_dir=env.run_dir,
        log=env.log,
        item=env.item.value if env.item else None,
        item_index=env.item.index if env.item else None,
        item_key=env.item_key,
    )
    try:
        if inspect.iscoroutinefunction(function):
            result = await function(context)
        else:
            result = await run_in_thread(function, context)
        if inspect.isawaitable(result):
            result = await result
    except asyncio.CancelledError:
        raise
    except DoNotRetry as exc:
        raise StepFailed(step.id, _describe_exception(exc), retryable=False) from exc
    except UndeclaredRead as exc:
        raise StepFailed(step.id, str(exc), hint=exc.hint, retryable=False) from None
    except Exception as exc:
        raise StepFailed(step.id, _describe_exception(exc)) from exc
    return StepOutcome(value=_as_json_value(step, result), read_steps=frozenset(outputs.read))


def _import_module(step: PythonStep, module_name: str, base_dir: Path) -> Any:
    try:
        return import_user_module(module_name, base_dir)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise SpecError(
                f'step "{step.id}": cannot import module "{module_name}"',
                hint=f"put {module_name.replace('.', '/')}.py next to the config "
                f"({base_dir}) or install it",
            ) from None
        raise SpecError(
            f'step "{step.id}": importing "{module_name}" failed: {_describe_exception(exc)}'
        ) from exc
    except Exception as exc:
        raise SpecError(
            f'step "{step.id}": importing "{module_name}" failed: {_describe_exception(exc)}'
        ) from exc


def _describe_exception(exc: BaseException) -> str:
    """``ValueError: bad item (helpers.py:12)``: the exception and where user code raised it.

    Frames of stepline and of the standard library are passed over, so an error raised inside
    ``json.loads`` or a ``cached_property`` still points at the user's line that called it.
    """
    skipped = (str(Path(__file__).resolve().parents[1]), sysconfig.get_paths()["stdlib"])
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not str(Path(frame.filename).resolve()).startswith(skipped)
    ]
    where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _as_json_value(step: PythonStep, value: Any) -> Any:
    """The value as it will read back from its JSON file (int dict keys become strings)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False, default=as_plain_json))
    except (TypeError, ValueError) as exc:
        raise StepFailed(
            step.id,
            f"{step.function} returned a value that is not JSON-serialisable ({exc})",
            hint="return dicts, lists, strings, numbers, booleans or None",
        ) from None
