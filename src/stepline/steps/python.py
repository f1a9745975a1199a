"""``kind: python``: call ``module:function`` with a ``StepContext``; its return is the output.

Modules next to the config file are importable. Sync functions run in a daemon thread so the
event loop (and Ctrl-C) stay responsive; async functions are awaited. The context records which
earlier outputs the function read, so editing an output it never touched does not re-run it.
"""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

from stepline.context import (
    RecordingMapping,
    StepContext,
    UndeclaredRead,
    as_json_value,
    item_fields,
)
from stepline.errors import DoNotRetry, StepFailed
from stepline.hashing import hash_bytes
from stepline.spec import PythonStep
from stepline.steps.base import StepEnvironment, StepOutcome
from stepline.threads import run_in_thread
from stepline.usercode import describe_exception, import_step_module, resolve_function


def function_source_hash(step: PythonStep, base_dir: Path) -> str | None:
    """Hash of the module file that defines the function, so editing it re-runs the step."""
    module = import_step_module(step.id, step.function.partition(":")[0], base_dir)
    source = getattr(module, "__file__", None)
    if not source:
        return None
    try:
        return hash_bytes(Path(source).read_bytes())
    except OSError:
        return None


async def run_python_step(step: PythonStep, env: StepEnvironment) -> StepOutcome:
    function = resolve_function(step.id, step.function, env.spec.base_dir)
    outputs = RecordingMapping(env.outputs, step.id, env.undeclared)
    context = StepContext(
        step_id=step.id,
        input=env.input,
        steps=outputs,
        vars=dict(env.vars),
        run_id=env.run_id,
        run_dir=env.run_dir,
        log=env.log,
        **item_fields(env.item),
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
        raise StepFailed(step.id, describe_exception(exc), retryable=False) from exc
    except UndeclaredRead as exc:
        raise StepFailed(step.id, str(exc), hint=exc.hint, retryable=False) from None
    except Exception as exc:
        raise StepFailed(step.id, describe_exception(exc)) from exc
    return StepOutcome(
        value=as_json_value(step.id, step.function, result), read_steps=frozenset(outputs.read)
    )
