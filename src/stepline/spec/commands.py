"""Is the program of each shell step there? Checked when the config is loaded.

A shell step whose program is not installed would otherwise pass ``validate`` and fail only
once its run folder exists, perhaps after an hour of paid LLM steps. Only a literal
``command[0]`` is checked (a templated one is known only when the step runs), and it is looked
up the way the operating system will when ``steps/shell.py`` starts it: a name with a slash
from the step's working folder, a bare name in each folder of the ``PATH`` the process gets
(the step's ``env:`` PATH when it sets one; a relative folder there starts from the working
folder too, as it does for the child process).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stepline.errors import SpecError
from stepline.spec.models import CLUSTER_EXECUTORS, PipelineSpec, ShellStep

TEMPLATE_MARKERS = ("{{", "{%", "{#")
INSTALL_HINT = "install it or fix command[0]"


@dataclass(frozen=True)
class CommandProblem:
    """Why a step's program cannot be started, and what to do about it."""

    message: str
    hint: str


def check_shell_commands(
    spec: PipelineSpec, lines: Mapping[tuple[Any, ...], int], label: str
) -> None:
    """Raise a ``SpecError`` naming the line and the step of the first enabled shell step whose
    literal program is missing or not executable (a disabled step is never started, and a
    step on a cluster starts its program on the cluster's workers, not here)."""
    for index, step in enumerate(spec.steps):
        if not isinstance(step, ShellStep) or not step.enabled:
            continue
        if (step.executor or spec.executor) in CLUSTER_EXECUTORS:
            continue
        problem = command_problem(step, spec.base_dir)
        if problem is not None:
            line = lines.get(("steps", index, "command", 0)) or lines.get(
                ("steps", index, "command")
            )
            where = f"{label}:{line}" if line else label
            raise SpecError(f'{where}: step "{step.id}": {problem.message}', hint=problem.hint)


def command_problem(step: ShellStep, base_dir: Path) -> CommandProblem | None:
    """What stops ``step``'s program from starting, or None when it starts (or cannot be known
    before the step runs, because a template decides it)."""
    program = step.command[0]
    if is_template(program):
        return None
    if not program:
        return CommandProblem(
            "command[0] is empty", hint="write the program to run first, e.g. [python3, x.py]"
        )
    cwd = working_dir(step, base_dir)
    if "/" in program:
        if os.path.isabs(program):
            return _path_problem(program, Path(program))
        return None if cwd is None else _path_problem(program, cwd / program)
    return _search_problem(program, step, cwd)


def is_template(text: str) -> bool:
    """Whether ``text`` holds template syntax (its value is known only when the step runs)."""
    return any(marker in text for marker in TEMPLATE_MARKERS)


def working_dir(step: ShellStep, base_dir: Path) -> Path | None:
    """The folder the step's process starts in, as ``steps/shell.py`` picks it; None when
    ``cwd`` is a template."""
    if step.cwd is None:
        return base_dir
    return None if is_template(step.cwd) else base_dir / step.cwd


def _path_problem(program: str, path: Path) -> CommandProblem | None:
    if os.path.isfile(path):
        if os.access(path, os.X_OK):
            return None
        return _not_executable(program, path)
    if os.path.isdir(path):
        return CommandProblem(
            f'command "{program}" is a folder, not a program ({path})', hint=INSTALL_HINT
        )
    return CommandProblem(
        f'command "{program}" not found: there is no {path}',
        hint=f"{INSTALL_HINT}; a relative path starts from the step's cwd (by default the "
        "config's folder)",
    )


def _search_problem(program: str, step: ShellStep, cwd: Path | None) -> CommandProblem | None:
    """Look ``program`` up in each folder of the process's PATH, as ``execvpe`` does: the first
    executable file wins; a match that is not executable is passed over."""
    environment = dict(os.environ)
    if "PATH" in step.env:
        if is_template(step.env["PATH"]):
            return None
        environment["PATH"] = step.env["PATH"]
    not_executable: list[Path] = []
    for folder in os.get_exec_path(environment):
        base = Path(folder or ".")
        if not base.is_absolute():
            if cwd is None:
                return None  # the folder depends on a templated cwd
            base = cwd / base
        candidate = base / program
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                return None
            not_executable.append(candidate)
    if not_executable:
        return _not_executable(program, not_executable[0])
    which = " (the PATH in the step's env:)" if "PATH" in step.env else ""
    return CommandProblem(f'command "{program}" not found on PATH{which}', hint=INSTALL_HINT)


def _not_executable(program: str, path: Path) -> CommandProblem:
    return CommandProblem(
        f'command "{program}" is not executable ({path})',
        hint=f"make it executable (chmod +x {path}), or {INSTALL_HINT}",
    )
