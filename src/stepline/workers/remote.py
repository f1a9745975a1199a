"""One attempt of a Python step, on a worker: import the function, call it, answer.

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
from stepline.workers.messages import Reply, StepPayload

_loop: asyncio.AbstractEventLoop | None = None  # a worker's coroutines all run on one loop
_payloads: OrderedDict[str, StepPayload] = OrderedDict()  # a cluster worker's recent steps'
PAYLOADS_KEPT = 4


def run_on_cluster(token: str, body: bytes, item: Item | None) -> Reply:
    """A cluster task: one attempt of the step ``token`` names (its pickled payload in
    ``body``, unpickled once per worker and step), its function found at the config's path."""
    return run_attempt(_payload(token, body), item, worker=_cluster_worker())


def run_shipped(token: str, body: bytes, item: Item | None) -> Reply:
    """``run_on_cluster`` with the function found in the current folder, where the engine
    put its copy of the config folder's modules (Ray's ``working_dir``)."""
    return run_attempt(_payload(token, body), item, worker=_cluster_worker(), base_dir=Path.cwd())


def worker_pid() -> int:
    """A task that does nothing but be run: started once per worker, it has the engine start
    the workers (with the shipped code) before the first item's ``timeout:`` starts to run."""
    return os.getpid()


def _payload(token: str, body: bytes) -> StepPayload:
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
