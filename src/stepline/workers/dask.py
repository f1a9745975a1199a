"""The ``dask`` executor: attempts as tasks on a dask.distributed cluster (the ``dask`` extra).

The cluster is the one at ``dask: {address}`` or ``DASK_SCHEDULER_ADDRESS``; with neither, a
``LocalCluster`` of worker processes is started for the run, listening on 127.0.0.1 only
(no dashboard), and closed after it. The runner keeps the run: a task is one attempt of one
item, at most ``workers`` are out at once, and its ``Reply`` comes back to the runner, which
commits it. Dask retries nothing behind stepline's back on a cluster stepline starts
(``allowed-failures: 0``); a worker that dies fails that attempt with ``KilledWorker``.

Dask cannot stop a running task: cancelling a future leaves the task running in its worker.
So an attempt that times out (or is cancelled by Ctrl-C or ``on_item_error: fail``) has its
future cancelled first, then the worker that runs it restarted by its nanny: cancelled
first, or the scheduler would run the task again on another worker.

Code reaches the workers by path: the config's folder must be at the same path on every
worker (always true of the local cluster; a shared or synced folder on a real one), and
stepline itself must be installed there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Iterator
from typing import Any

from stepline.context import Item
from stepline.errors import WorkerLost
from stepline.workers.messages import Reply
from stepline.workers.remote import run_on_cluster

ADDRESS_VARIABLE = "DASK_SCHEDULER_ADDRESS"
LOCAL = {
    "distributed.scheduler.worker-saturation": 1.0,  # no task queued on a busy worker
    "distributed.scheduler.allowed-failures": 0,  # a dead worker fails the attempt, once
}


class DaskCluster:
    """The run's dask cluster, connected (or started) with its first attempt."""

    def __init__(self, *, address: str | None, workers: int) -> None:
        self.address = address or os.environ.get(ADDRESS_VARIABLE) or None
        self.workers = workers  # of a local cluster
        # distributed has no type hints: its client, cluster and futures are Any here
        self._client: Any = None
        self._cluster: Any = None
        self._opening = asyncio.Lock()
        self._payloads: dict[str, Any] = {}  # step token -> its payload's future, everywhere

    @property
    def local(self) -> bool:
        return self.address is None

    async def run(self, token: str, body: bytes, item: Item | None) -> Reply:
        """Run one attempt as a task; cancelling the await stops it (see above)."""
        client = await self.connect()
        payload = self._payloads.get(token)
        if payload is None:
            payload = await client.scatter(body, broadcast=True, hash=False)
            self._payloads[token] = payload
        future = client.submit(run_on_cluster, token, payload, item, pure=False)
        try:
            reply = await future
        except asyncio.CancelledError:
            await self._stop(client, future)
            raise
        except Exception as exc:  # the task never gave a reply: its worker died
            raise WorkerLost(_lost(exc)) from None
        finally:
            future.release()
        assert isinstance(reply, Reply)
        return reply

    async def close(self) -> None:
        self._payloads.clear()
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                await self._cluster.close()
        self._client = self._cluster = None

    async def connect(self) -> Any:
        """The client, once the cluster is joined (or started)."""
        async with self._opening:
            if self._client is None:
                self._client = await self._connect()
            return self._client

    async def _connect(self) -> Any:
        import dask
        from distributed import Client, LocalCluster

        if self.address is not None:
            return await Client(self.address, asynchronous=True, set_as_default=False)
        with dask.config.set(LOCAL), _sigint_ignored():
            self._cluster = await LocalCluster(
                n_workers=self.workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                worker_dashboard_address=None,
                scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
                asynchronous=True,
                silence_logs=logging.CRITICAL,  # its errors are the items' failures
            )
        return await Client(self._cluster, asynchronous=True, set_as_default=False)

    async def _stop(self, client: Any, future: Any) -> None:
        """Cancel the task, then restart the worker that runs it, if one does."""
        key = future.key
        try:
            where = await client.run_on_scheduler(_processing_on, key=key)
            await client.cancel(future)
            if where:
                await client.restart_workers([where])
                self._payloads.clear()  # scattered anew: the restart may lose their copies
        except Exception:  # the cluster is going away too (Ctrl-C): nothing more to stop
            return


def _processing_on(dask_scheduler: Any, key: str) -> str | None:
    """On the scheduler: the address of the worker running the task ``key``."""
    task = dask_scheduler.tasks.get(key)
    worker = task.processing_on if task is not None else None
    return worker.address if worker is not None else None


def _lost(exc: Exception) -> str:
    from distributed import KilledWorker

    if isinstance(exc, KilledWorker):
        return "its dask worker died while running it (KilledWorker)"
    return f"dask could not run it: {type(exc).__name__}: {exc}"


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Start the local cluster's processes with SIGINT ignored: Ctrl-C at the terminal then
    reaches only the runner, which decides (a Python process that starts with SIGINT
    ignored keeps it so)."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: signals are not ours to change
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
