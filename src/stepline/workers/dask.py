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

Code reaches the workers one of two ways (``dask: {code}``). ``upload``, the default for a
cluster at an address: the config folder's modules, zipped from an allow-list
(``shipping.py``), go to every worker, and to every worker that joins later, as a worker
plugin named for the run, which unpacks them into the worker's local directory; there the
function is imported and a shell command runs. Closing the run unregisters the plugin,
which removes the folder. ``shared``, the default for the local cluster: the config's folder
is at the same path on every worker (a shared or synced folder on a real cluster). stepline
itself must be installed where the workers run.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import secrets
import shutil
import signal
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from stepline.errors import WorkerLost
from stepline.workers.messages import Reply
from stepline.workers.remote import Work, run_on_cluster, run_uploaded
from stepline.workers.shipping import bundle_code

ADDRESS_VARIABLE = "DASK_SCHEDULER_ADDRESS"
LOCAL = {
    "distributed.scheduler.worker-saturation": 1.0,  # no task queued on a busy worker
    "distributed.scheduler.allowed-failures": 0,  # a dead worker fails the attempt, once
}


class DaskCluster:
    """The run's dask cluster, connected (or started) with its first attempt."""

    def __init__(
        self, *, address: str | None, workers: int, code_folder: Path, code: str | None = None
    ) -> None:
        self.address = address or os.environ.get(ADDRESS_VARIABLE) or None
        self.workers = workers  # of a local cluster
        self.code_folder = code_folder
        self.upload = (code or ("shared" if self.local else "upload")) == "upload"
        self._code: str | None = None  # the uploaded modules' folder name on every worker
        # distributed has no type hints: its client, cluster and futures are Any here
        self._client: Any = None
        self._cluster: Any = None
        self._opening = asyncio.Lock()
        self._payloads: dict[str, Any] = {}  # step token -> its payload's future, everywhere

    @property
    def local(self) -> bool:
        return self.address is None

    async def run(self, token: str, body: bytes, work: Work) -> Reply:
        """Run one attempt as a task; cancelling the await stops it (see above)."""
        client = await self.connect()
        payload = self._payloads.get(token)
        if payload is None:
            payload = await client.scatter(body, broadcast=True, hash=False)
            self._payloads[token] = payload
        if self._code is None:
            future = client.submit(run_on_cluster, token, payload, work, pure=False)
        else:
            future = client.submit(run_uploaded, token, payload, work, self._code, pure=False)
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
        if self._client is not None and self._code is not None:
            with contextlib.suppress(Exception):  # its folders go with the workers anyway
                await self._client.unregister_worker_plugin(self._code)
        self._code = None
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
                client = await self._connect()
                if self.upload:
                    self._code = await self._upload(client)
                self._client = client
            return self._client

    async def _upload(self, client: Any) -> str:
        """Send the config folder's modules to every worker (see above): their folder's name."""
        with tempfile.TemporaryDirectory(prefix="stepline-dask-") as scratch:
            bundle = bundle_code(self.code_folder, Path(scratch))
            name = f"{bundle.path.stem}-{secrets.token_hex(4)}"  # one per run: its own to remove
            plugin = UploadedCode(name, bundle.path.read_bytes())
        try:
            await client.register_plugin(plugin, name=name)
        except Exception as exc:
            with contextlib.suppress(Exception):
                await client.close()
            raise WorkerLost(f"the dask workers could not unpack the code: {exc}") from exc
        return name

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


class UploadedCode(WorkerPlugin):
    """A worker plugin holding a run's zipped modules: each worker it reaches (now, or when it
    joins) unpacks them into ``<local directory>/<name>``, removed when the run ends."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name = name
        self.data = data

    def setup(self, worker: Any) -> None:
        folder = Path(worker.local_directory) / self.name
        if folder.is_dir():
            return
        unpacking = folder.with_name(f".{self.name}-{os.getpid()}")
        with zipfile.ZipFile(io.BytesIO(self.data)) as archive:
            archive.extractall(unpacking)
        unpacking.rename(folder)  # whole or not at all

    def teardown(self, worker: Any) -> None:
        shutil.rmtree(Path(worker.local_directory) / self.name, ignore_errors=True)


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
