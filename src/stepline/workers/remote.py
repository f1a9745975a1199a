"""One attempt of a Python step, on a worker: import the function, call it, answer (and,
on a cluster, one of a shell step: run its command there).

The same rules as in the runner's own threads (``steps/python.py``): the function gets a
``StepContext``, a coroutine is run to its end, the result must be JSON, reading an earlier
output the step does not wait for is an ``UndeclaredRead``, ``DoNotRetry`` is not retried.
Nothing here raises: every end is a ``Reply``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import pickle
import subprocess
import sys
import traceback
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stepline.context import (
    Item,
    RecordingMapping,
    StepContext,
    UndeclaredRead,
    as_json_value,
    item_fields,
    step_logger,
)
from stepline.errors import DoNotRetry, SpecError, StepFailed
from stepline.usercode import describe_exception, resolve_function
from stepline.workers.commands import ShellCommand
from stepline.workers.guard import MARK
from stepline.workers.messages import Reply, ShellPayload, StepPayload

_loop: asyncio.AbstractEventLoop | None = None  # a worker's coroutines all run on one loop
_payloads: OrderedDict[str, StepPayload | ShellPayload] = OrderedDict()
"""A cluster worker's recent steps' payloads, by token (the last ``PAYLOADS_KEPT``)."""
PAYLOADS_KEPT = 4
GUARD = Path(__file__).with_name("guard.py")

Work = Item | ShellCommand | None
"""What one attempt sends: a Python step's item (None: not a fan-out) or a shell command."""


def run_on_cluster(token: str, body: bytes, work: Work) -> Reply:
    """A cluster task: one attempt of the step ``token`` names (its pickled payload in
    ``body``, unpickled once per worker and step), for ``work`` (the item, or the shell
    command), with the config's folder at the same path as in the runner."""
    return _attempt(_payload(token, body), work, base_dir=None, group_stopped=False)


def run_shipped(token: str, body: bytes, work: Work) -> Reply:
    """``run_on_cluster`` in the current folder, where the engine put its copy of the config
    folder's modules (Ray's ``working_dir``). Ray runs each worker in a process group of its
    own and kills that group when the worker exits, so a shell command stays in it."""
    return _attempt(_payload(token, body), work, base_dir=Path.cwd(), group_stopped=True)


def run_uploaded(token: str, body: bytes, work: Work, code: str) -> Reply:
    """``run_on_cluster`` in the folder ``code`` of this dask worker's local directory, where
    the run's code upload unpacked the config folder's modules (``workers/dask.py``)."""
    from distributed import get_worker

    folder = Path(get_worker().local_directory) / code
    return _attempt(_payload(token, body), work, base_dir=folder, group_stopped=False)


def worker_pid() -> int:
    """A task that does nothing but be run: started once per worker, it has the engine start
    the workers (with the shipped code) before the first item's ``timeout:`` starts to run."""
    return os.getpid()


def _attempt(
    payload: StepPayload | ShellPayload, work: Work, *, base_dir: Path | None, group_stopped: bool
) -> Reply:
    """``group_stopped``: the engine kills this worker's process group when the worker exits."""
    if isinstance(payload, ShellPayload):
        assert isinstance(work, ShellCommand)
        return run_command(work, base_dir or Path(payload.base_dir), guarded=not group_stopped)
    assert not isinstance(work, ShellCommand)
    return run_attempt(payload, work, worker=_cluster_worker(), base_dir=base_dir)


def _payload(token: str, body: bytes) -> StepPayload | ShellPayload:
    payload = _payloads.get(token)
    if payload is None:
        payload = pickle.loads(body)
        _payloads[token] = payload
        while len(_payloads) > PAYLOADS_KEPT:
            _payloads.popitem(last=False)
    return payload


def _cluster_worker() -> str:
    """This worker, for error messages: its engine's name for it where there is one."""
    if "ray" in sys.modules:
        with contextlib.suppress(Exception):
            import ray

            node = ray.get_runtime_context().get_node_id()[:12]
            return f"ray worker {os.getpid()} on node {node}"
    if "distributed" in sys.modules:
        with contextlib.suppress(ImportError, ValueError):
            from distributed import get_worker

            return f"dask worker {get_worker().address}"
    return f"worker process {os.getpid()}"


def run_attempt(
    payload: StepPayload, item: Item | None, *, worker: str, base_dir: Path | None = None
) -> Reply:
    """Call the step's function for ``item``; ``worker`` names this worker in errors, and
    ``base_dir`` is where the function's module is, if not at the config's path."""
    logs: list[tuple[str, str]] = []
    log = step_logger(payload.step_id, lambda message, level: logs.append((level, message)))
    try:
        function = resolve_function(
            payload.step_id, payload.function, base_dir or Path(payload.base_dir)
        )
    except SpecError as exc:
        return Reply(
            error=f"cannot import {payload.function} on {worker}: "
            + exc.message.removeprefix(f'step "{payload.step_id}": '),
            hint=exc.hint or "install what the module imports where the workers run",
            retryable=False,
            cannot_run=True,
            traceback=_traceback(exc),
        )
    outputs = RecordingMapping(payload.outputs, payload.step_id, payload.undeclared)
    context = StepContext(
        step_id=payload.step_id,
        input=payload.input,
        steps=outputs,
        vars=dict(payload.vars),
        run_id=payload.run_id,
        run_dir=Path(payload.run_dir),
        log=log,
        **item_fields(item),
    )
    try:
        value = as_json_value(payload.step_id, payload.function, _call(function, context))
    except DoNotRetry as exc:
        return _failed(exc, logs, retryable=False)
    except UndeclaredRead as exc:
        return Reply(error=str(exc), hint=exc.hint, retryable=False, logs=tuple(logs))
    except StepFailed as exc:  # not JSON
        return Reply(error=exc.reason, hint=exc.hint, logs=tuple(logs))
    except Exception as exc:
        return _failed(exc, logs, retryable=True)
    return Reply(value=value, read=frozenset(outputs.read), logs=tuple(logs))


def run_command(command: ShellCommand, base_dir: Path, *, guarded: bool) -> Reply:
    """Run a shell step's command in ``base_dir`` (its ``cwd:`` under it) on this worker.

    The engine stops an attempt by killing this worker, which runs no cleanup. Where the
    engine kills the worker's process group with it (Ray), the command stays in that group;
    elsewhere it runs under ``guard.py`` (``guarded``), which stops it and all it started
    when this worker dies.
    """
    guard = [sys.executable, "-I", "-S", str(GUARD), str(os.getpid())] if guarded else []
    try:
        with command.start_errors():
            process = subprocess.Popen(
                [*guard, *command.argv],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=command.folder(base_dir),
                env={**os.environ, **command.env},
                start_new_session=guarded,
            )
        with process:
            stdout, stderr = process.communicate()
        said = stderr.decode("utf-8", errors="replace").strip()
        if process.returncode in (126, 127) and said.startswith(f"{MARK}cannot run "):
            raise StepFailed(
                command.step_id, said.removeprefix(MARK).splitlines()[0], retryable=False
            )
        value = command.value(process.returncode, stdout, stderr)
    except StepFailed as exc:
        return Reply(
            error=exc.reason, hint=exc.hint, retryable=exc.retryable, returncode=exc.returncode
        )
    return Reply(value=value)


def _call(function: Callable[..., Any], context: StepContext) -> Any:
    global _loop
    result = function(context)
    if inspect.isawaitable(result):
        if _loop is None:
            _loop = asyncio.new_event_loop()
        result = _loop.run_until_complete(result)
    return result


def _failed(exc: Exception, logs: list[tuple[str, str]], *, retryable: bool) -> Reply:
    return Reply(
        error=describe_exception(exc),
        retryable=retryable,
        logs=tuple(logs),
        traceback=_traceback(exc),
    )


def _traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))
