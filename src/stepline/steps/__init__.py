"""Step executors by kind: each turns a step spec and an environment into an outcome."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from stepline.context import InputData
from stepline.spec import LLMStep, PythonStep, ShellStep, StepBase
from stepline.steps.base import StepEnvironment, StepOutcome


async def execute_step(step: StepBase, env: StepEnvironment) -> StepOutcome:
    """Run one step with the executor for its kind (imported lazily: the SDKs are heavy)."""
    executor: Callable[[Any, StepEnvironment], Awaitable[StepOutcome]]
    if isinstance(step, LLMStep):
        from stepline.steps.llm import run_llm_step as executor
    elif isinstance(step, PythonStep):
        from stepline.steps.python import run_python_step as executor
    elif isinstance(step, ShellStep):
        from stepline.steps.shell import run_shell_step as executor
    else:
        raise TypeError(f"no executor for {type(step).__name__}")
    return await executor(step, env)


__all__ = ["InputData", "StepEnvironment", "StepOutcome", "execute_step"]
