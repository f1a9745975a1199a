"""The ``processes`` executor's pool: worker processes started on demand, kept for the run.

Each worker has pipes of its own, so a worker that dies (``os._exit``, the OOM killer), or
that the runner kills (a timeout, a cancelled item, Ctrl-C), takes only its own attempt with
it, and the next attempt gets a fresh worker. The standard library's ``ProcessPoolExecutor``
can do neither: one dead worker breaks the whole pool, and a running task cannot be stopped.

Workers run in sessions of their own, so Ctrl-C at the terminal reaches only the runner, which
decides; each is noted in the run's ``ProcessGroups`` while it lives, so a runner killed
outright has its workers (and what they started) stopped by the next command on its folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import sys
from dataclasses import dataclass

from stepline.context import Item
from stepline.errors import WorkerLost
from stepline.processes import ProcessGroups
from stepline.workers.messages import (
    FRAME_HEADER,
    AttemptMessage,
    Reply,
    StepMessage,
    frame,
)
from stepline.workers.process_main import RUNNER_PID

WORKER_MODULE = "stepline.workers.process_main"
STOP_GRACE_S = 2.0
"""How long a worker may take to exit once told to (its stdin closed) before it is killed."""


@dataclass(eq=False)
class _Worker:
    process: asyncio.subprocess.Process
    token: str | None = None  # the step whose payload it holds

    @property
    def name(self) -> str:
        return f"worker process {self.process.pid}"


class ProcessPool:
    """Worker processes for one run; ``run`` sends an attempt to one of them."""

    def __init__(self, *, groups: ProcessGroups | None = None) -> None:
        self._groups = groups
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self.started = 0  # workers started so far, replacements included

    async def run(self, token: str, body: bytes, item: Item | None, *, keep_idle: int) -> Reply:
        """Run one attempt of step ``token`` (payload ``body``) on a worker. A worker that
        already holds the step's payload is preferred; ``keep_idle`` caps the idle workers
        kept for later attempts. Cancelling the await kills the worker."""
        worker = self._take(token) or await self._start()
        self._busy.add(worker)
        try:
            if worker.token != token:
                worker.token = None
                await self._send(worker, frame(StepMessage(token, body)))
                worker.token = token
            await self._send(worker, frame(AttemptMessage(token, item)))
            reply = await self._receive(worker)
        except BaseException:  # lost, timed out, cancelled: its state is unknown
            self._busy.discard(worker)
            await self._kill(worker)
            raise
        self._busy.discard(worker)
        if len(self._idle) < keep_idle:
            self._idle.append(worker)
        else:
            await self._stop(worker)
        return reply

    async def close(self) -> None:
        """Stop every worker: idle ones are asked to exit, busy ones are killed."""
        idle, self._idle = self._idle, []
        busy, self._busy = list(self._busy), set()
        await asyncio.gather(*(self._stop(worker) for worker in idle))
        await asyncio.gather(*(self._kill(worker) for worker in busy))

    def _take(self, token: str) -> _Worker | None:
        for index in range(len(self._idle) - 1, -1, -1):
            if self._idle[index].token == token:
                return self._idle.pop(index)
        return self._idle.pop() if self._idle else None

    async def _start(self) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-P",  # not the current folder on sys.path: modules come from the config's
            "-m",
            WORKER_MODULE,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
            env={**os.environ, RUNNER_PID: str(os.getpid()), "STEPLINE_EXECUTOR": "processes"},
        )
        self.started += 1
        if self._groups is not None:
            self._groups.note(process.pid)
        return _Worker(process)

    async def _send(self, worker: _Worker, data: bytes) -> None:
        assert worker.process.stdin is not None
        try:
            worker.process.stdin.write(data)
            await worker.process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            raise WorkerLost(await self._death(worker)) from None

    async def _receive(self, worker: _Worker) -> Reply:
        assert worker.process.stdout is not None
        try:
            header = await worker.process.stdout.readexactly(FRAME_HEADER.size)
            (size,) = FRAME_HEADER.unpack(header)
            data = await worker.process.stdout.readexactly(size)
        except asyncio.IncompleteReadError:
            raise WorkerLost(await self._death(worker)) from None
        reply = pickle.loads(data)
        assert isinstance(reply, Reply)
        return reply

    async def _death(self, worker: _Worker) -> str:
        code = await worker.process.wait()
        if code < 0:
            how = f"was killed by signal {signal.Signals(-code).name}"
            if code == -signal.SIGKILL:
                how += " (out of memory?)"
        else:
            how = f"exited with code {code}"
        return f"{worker.name} {how} while running it"

    async def _stop(self, worker: _Worker) -> None:
        """Close its stdin, so it exits; kill it if it lingers."""
        assert worker.process.stdin is not None
        with contextlib.suppress(OSError):
            worker.process.stdin.close()
        try:
            await asyncio.wait_for(worker.process.wait(), STOP_GRACE_S)
        except TimeoutError:
            await self._kill(worker)
        self._forget(worker)

    async def _kill(self, worker: _Worker) -> None:
        """SIGKILL its process group: the worker and anything its item started."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(worker.process.pid, signal.SIGKILL)
        await worker.process.wait()
        self._forget(worker)

    def _forget(self, worker: _Worker) -> None:
        if self._groups is not None:
            self._groups.forget(worker.process.pid)
