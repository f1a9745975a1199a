"""``kind: shell``: run an argv (never through a shell); stdout is the output.

Each argument is a template rendered on its own, so a value with spaces or quotes stays one
argument and cannot inject another command. The process gets its own process group, so a
timeout or an interrupt stops it and everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

from stepline.errors import StepFailed
from stepline.spec import ShellStep
from stepline.steps.base import StepEnvironment, StepOutcome
from stepline.templates import render

STDERR_TAIL_CHARS = 2000
KILL_GRACE_S = 2.0


async def run_shell_step(step: ShellStep, env: StepEnvironment) -> StepOutcome:
    context = env.template_context()
    argv = [render(argument, context, where="command") for argument in step.command]
    environment = {
        **os.environ,
        "STEPLINE_RUN_ID": env.run_id,
        "STEPLINE_RUN_DIR": str(env.run_dir),
        "STEPLINE_STEP_ID": step.id,
        **{key: render(value, context, where=f"env.{key}") for key, value in step.env.items()},
    }
    cwd = env.spec.base_dir
    if step.cwd is not None:
        cwd = cwd / render(step.cwd, context, where="cwd")
    if not cwd.is_dir():
        raise StepFailed(step.id, f"the working folder {cwd} does not exist or is not a folder")
    process = await _start(step, argv, environment, cwd)
    if env.processes is not None:  # so that a runner killed outright can be cleaned up after
        env.processes.note(process.pid)
    try:
        stdout, stderr = await process.communicate()
    except asyncio.CancelledError:
        await _stop_group(process)
        raise
    finally:
        if env.processes is not None:
            env.processes.forget(process.pid)
    if process.returncode != 0:
        raise StepFailed(
            step.id,
            _failure_message(argv[0], process.returncode, stderr),
            returncode=process.returncode,
        )
    return StepOutcome(value=parse_stdout(stdout.decode("utf-8", errors="replace")))


def parse_stdout(text: str) -> Any:
    """JSON when stdout is a JSON document, else the text without its final newline."""
    stripped = text.strip()
    if stripped:
        with contextlib.suppress(json.JSONDecodeError):
            return json.loads(stripped)
    return text.removesuffix("\n")


async def _start(
    step: ShellStep, argv: list[str], environment: dict[str, str], cwd: Path
) -> asyncio.subprocess.Process:
    try:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=environment,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        missing = argv[0] if exc.filename in (None, argv[0]) else exc.filename
        raise StepFailed(
            step.id, f"cannot run {argv[0]}: {missing} not found", retryable=False
        ) from None
    except PermissionError:
        raise StepFailed(
            step.id, f"cannot run {argv[0]}: permission denied", retryable=False
        ) from None
    except OSError as exc:
        raise StepFailed(step.id, f"cannot run {argv[0]}: {exc.strerror or exc}") from None


async def _stop_group(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group, then SIGKILL it if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), KILL_GRACE_S)
            return
        except TimeoutError:
            continue


def _failure_message(program: str, returncode: int | None, stderr: bytes) -> str:
    if returncode is not None and returncode < 0:
        status = f"was killed by signal {signal.Signals(-returncode).name}"
    else:
        status = f"exited with code {returncode}"
    tail = stderr.decode("utf-8", errors="replace").strip()[-STDERR_TAIL_CHARS:]
    return f"{program} {status}" + (f"; stderr:\n{tail}" if tail else "")
