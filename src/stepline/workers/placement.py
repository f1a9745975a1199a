"""Which executor runs a step, and one attempt of it there.

``--executor`` wins over a step's ``executor:``, which wins over the pipeline's. LLM steps are
always async calls in the runner. On ``threads`` an attempt runs as it always has
(``steps.execute_step``); on ``processes`` a Python step's attempt goes to the run's worker
pool, and a shell step, already a process of its own, runs as on threads with at most
``workers`` items at once; on ``ray`` and ``dask`` both kinds run on the cluster's workers (a
shell step's command is rendered here, where the run's outputs are). The executor changes
where an attempt runs, never what the run records: the reply becomes the same
``StepOutcome`` or ``StepFailed`` a thread would give.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pickle
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stepline.context import InputData
from stepline.errors import RemoteTraceback, SpecError, StepFailed, WorkerLost
from stepline.processes import ProcessGroups
from stepline.spec import ExecutorName, PipelineSpec, PythonStep, ShellStep, StepBase
from stepline.spec.models import CLUSTER_EXECUTORS
from stepline.steps import StepEnvironment, StepOutcome, execute_step
from stepline.steps.shell import render_command
from stepline.workers.commands import ShellCommand
from stepline.workers.messages import Reply, ShellPayload, StepPayload
from stepline.workers.processes import ProcessPool

if TYPE_CHECKING:
    from stepline.workers.dask import DaskCluster
    from stepline.workers.ray import RayCluster

EXTRAS = {"ray": "ray", "dask": "distributed"}
"""Executors that need an optional extra, and the module that says it is installed."""

LOST_HINTS = {
    "processes": "see the worker's stderr above; a kill by signal 9 is often the system "
    "running out of memory",
    "ray": "Ray's note on the worker is above; a worker killed outright is often the node "
    "running out of memory",
    "dask": "the dask worker's log says why (on a local cluster: run with --debug); a worker "
    "killed outright is often the machine running out of memory",
}
"""What to look at when a worker died in the middle of an attempt, per executor."""


def executor_of(spec: PipelineSpec, step: StepBase, override: str | None) -> ExecutorName | None:
    """Where the step's attempts run (``--executor``, else the step's, else the pipeline's);
    None for an LLM step (async calls, here)."""
    if not isinstance(step, PythonStep | ShellStep):
        return None
    chosen = override or step.executor or spec.executor
    return chosen  # type: ignore[return-value]  # checked by RunOptions


def check_executors(spec: PipelineSpec, steps: Sequence[StepBase], override: str | None) -> None:
    """Refuse, before the run starts, an executor whose extra is not installed."""
    for step in steps:
        executor = executor_of(spec, step, override)
        module = EXTRAS.get(executor or "")
        if module is not None and importlib.util.find_spec(module) is None:
            where = spec.where(step.id)
            raise SpecError(
                (f"{where}: " if where else "")
                + f'step "{step.id}" runs on executor: {executor}, which is not installed',
                hint=f"pip install 'stepline[{executor}]'",
            )


def cpu_count() -> int:
    """The CPUs this process may use (its affinity), at least one."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class _Prepared:
    outputs: Mapping[str, Any]  # the execution's outputs mapping: the same for its items
    token: str
    body: bytes


class Executors:
    """The run's executors: its own threads, and a process pool, a Ray or a dask cluster,
    each started with the first attempt that needs it."""

    def __init__(
        self, spec: PipelineSpec, *, override: str | None, groups: ProcessGroups | None
    ) -> None:
        self.spec = spec
        self.override = override
        self._groups = groups
        self._pool: ProcessPool | None = None
        self._ray: RayCluster | None = None
        self._dask: DaskCluster | None = None
        self._prepared: dict[str, _Prepared] = {}

    def executor_of(self, step: StepBase) -> ExecutorName | None:
        return executor_of(self.spec, step, self.override)

    def workers_of(self, step: StepBase) -> int | None:
        """The step's workers (its items at once); None on threads."""
        if self.executor_of(step) in (None, "threads"):
            return None
        assert isinstance(step, PythonStep | ShellStep)
        return step.workers or self.spec.workers or cpu_count()

    def metrics_of(self, step: StepBase) -> dict[str, Any]:
        """Where the step ran, for its metrics (``show``, the report): none for LLM steps."""
        executor = self.executor_of(step)
        if executor is None:
            return {}
        workers = self.workers_of(step)
        return {"executor": executor} | ({"workers": workers} if workers else {})

    def items_at_once(self, step: StepBase, concurrency: int) -> int:
        """A fan-out's items at once: its concurrency, at most one per worker."""
        workers = self.workers_of(step)
        return concurrency if workers is None else min(concurrency, workers)

    async def ready(self, step: StepBase) -> None:
        """Join (or start) the cluster ``step`` runs on before its first attempt, so that its
        ``timeout:`` bounds attempts, never a cluster's start-up."""
        executor = self.executor_of(step)
        if executor not in CLUSTER_EXECUTORS:
            return
        workers = self.workers_of(step) or 1
        try:
            if executor == "ray":
                await self._on_ray(workers).connect()
            else:
                await self._on_dask(workers).connect()
        except (SpecError, StepFailed):
            raise
        except Exception as exc:
            where = self.spec.ray if executor == "ray" else self.spec.dask
            address = where.address if where and where.address else None
            said = str(exc).strip().splitlines()
            raise StepFailed(
                step.id,
                f"could not reach the {executor} cluster"
                + (f" at {address}" if address else "")
                + f": {type(exc).__name__}"
                + (f": {said[0]}" if said else ""),
                hint=f"check {executor}: address (or "
                + ("RAY_ADDRESS" if executor == "ray" else "DASK_SCHEDULER_ADDRESS")
                + "), or leave it out to start a local cluster for the run",
                retryable=False,
            ) from exc

    async def run(self, step: StepBase, env: StepEnvironment) -> StepOutcome:
        """One attempt of ``step`` (for ``env.item``, in a fan-out) on its executor."""
        if not self._remote(step):
            return await execute_step(step, env)
        executor, workers = self.executor_of(step), self.workers_of(step) or 1
        prepared = self._prepare(step, env)
        work = render_command(step, env) if isinstance(step, ShellStep) else env.item
        try:
            if executor == "ray":
                reply = await self._on_ray(workers).run(prepared.token, prepared.body, work)
            elif executor == "dask":
                reply = await self._on_dask(workers).run(prepared.token, prepared.body, work)
            else:
                assert not isinstance(work, ShellCommand)
                reply = await self._processes().run(
                    prepared.token, prepared.body, work, keep_idle=workers
                )
        except WorkerLost as lost:
            raise StepFailed(step.id, str(lost), hint=LOST_HINTS[executor or ""]) from None
        return outcome_of(step, reply, env.log)

    async def close(self) -> None:
        """Stop the run's worker processes."""
        self._prepared.clear()
        if self._pool is not None:
            await self._pool.close()
        if self._ray is not None:
            await self._ray.close()
        if self._dask is not None:
            await self._dask.close()

    def _remote(self, step: StepBase) -> bool:
        """Whether the step's attempts leave the runner: a Python step off threads, and a
        shell step on a cluster (on ``processes`` its command is a process of its own)."""
        executor = self.executor_of(step)
        if isinstance(step, ShellStep):
            return executor in CLUSTER_EXECUTORS
        return isinstance(step, PythonStep) and executor not in (None, "threads")

    def _on_ray(self, workers: int) -> RayCluster:
        if self._ray is None:
            from stepline.workers.ray import RayCluster

            address = self.spec.ray.address if self.spec.ray else None
            self._ray = RayCluster(address=address, workers=workers, code_folder=self.spec.base_dir)
        return self._ray

    def _on_dask(self, workers: int) -> DaskCluster:
        if self._dask is None:
            from stepline.workers.dask import DaskCluster

            dask = self.spec.dask
            self._dask = DaskCluster(
                address=dask.address if dask else None,
                workers=workers,
                code_folder=self.spec.base_dir,
                code=dask.code if dask else None,
            )
        return self._dask

    def _processes(self) -> ProcessPool:
        if self._pool is None:
            self._pool = ProcessPool(groups=self._groups)
        return self._pool

    def _prepare(self, step: StepBase, env: StepEnvironment) -> _Prepared:
        """The step's payload, pickled once per execution (its items share ``env.outputs``)."""
        known = self._prepared.get(step.id)
        if known is not None and known.outputs is env.outputs:
            return known
        payload: StepPayload | ShellPayload
        if isinstance(step, ShellStep):
            payload = ShellPayload(step_id=step.id, base_dir=str(env.spec.base_dir))
        else:
            assert isinstance(step, PythonStep)
            payload = StepPayload(
                step_id=step.id,
                function=step.function,
                base_dir=str(env.spec.base_dir),
                # a fresh copy: the driver's may hold the input's text, read for a template
                input=InputData(path=env.input.path, name=env.input.name, hash=env.input.hash),
                outputs=dict(env.outputs),
                undeclared=env.undeclared,
                vars=dict(env.vars),
                run_id=env.run_id,
                run_dir=str(env.run_dir),
            )
        body = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        prepared = _Prepared(env.outputs, secrets.token_hex(8), body)
        self._prepared[step.id] = prepared
        return prepared


def outcome_of(step: StepBase, reply: Reply, log: logging.Logger) -> StepOutcome:
    """What a thread would have given: the outcome, or the failure (its logs replayed)."""
    for level, message in reply.logs:
        log.log(logging.getLevelNamesMapping().get(level.upper(), logging.INFO), "%s", message)
    if reply.error is None:
        return StepOutcome(value=reply.value, read_steps=reply.read)
    cause = RemoteTraceback(reply.traceback) if reply.traceback else None
    if reply.cannot_run:
        raise SpecError(f'step "{step.id}": {reply.error}', hint=reply.hint) from cause
    raise StepFailed(
        step.id,
        reply.error,
        hint=reply.hint,
        retryable=reply.retryable,
        returncode=reply.returncode,
    ) from cause
