"""``kind: shell``: run an argv (never through a shell); stdout is the output.

Each argument is a template rendered on its own, so a value with spaces or quotes stays one
argument and cannot inject another command. The process gets its own process group, so a
timeout or an interrupt stops it and everything it started.

The command is rendered where the run is (``render_command``: the templates read the run's
outputs) and run either here, by the runner's loop, or on a cluster worker
(``workers/remote.py``), in the folder the engine gives the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from stepline.spec import ShellStep
from stepline.steps.base import StepEnvironment, StepOutcome
from stepline.templates import render
from stepline.workers.commands import ShellCommand

KILL_GRACE_S = 2.0


def render_command(step: ShellStep, env: StepEnvironment) -> ShellCommand:
    """The attempt's command, its templates rendered for ``env`` (its item, the outputs)."""
    context = env.template_context()
    return ShellCommand(
        step_id=step.id,
        argv=tuple(render(argument, context, where="command") for argument in step.command),
        env={
            "STEPLINE_RUN_ID": env.run_id,
            "STEPLINE_RUN_DIR": str(env.run_dir),
            "STEPLINE_STEP_ID": step.id,
            **{key: render(value, context, where=f"env.{key}") for key, value in step.env.items()},
        },
        cwd=None if step.cwd is None else render(step.cwd, context, where="cwd"),
    )


async def run_shell_step(step: ShellStep, env: StepEnvironment) -> StepOutcome:
    command = render_command(step, env)
    cwd = command.folder(env.spec.base_dir)
    with command.start_errors():
        process = await asyncio.create_subprocess_exec(
            *command.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env={**os.environ, **command.env},
            start_new_session=True,
        )
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
    return StepOutcome(value=command.value(process.returncode, stdout, stderr))


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
