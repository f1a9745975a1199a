"""The ``ray`` executor: attempts as tasks on a Ray cluster (the ``ray`` extra).

The cluster is the one at ``ray: {address}`` or ``RAY_ADDRESS``; with neither, a local Ray
instance is started for the run and stopped after it. That instance listens on 127.0.0.1
only (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read when ``ray`` is imported: Ray otherwise
binds its servers to the machine's own address), with no dashboard and no usage reporting,
and its token is made for the run and held only in this process's environment (Ray would
otherwise write one under ``~/.ray``).

The runner keeps the run: a task is one attempt of one item, at most ``workers`` are out at
once, and its ``Reply`` comes back here to be committed. Ray retries nothing behind
stepline's back (``max_retries=0``); a worker that dies fails that attempt. A timeout or a
cancel force-cancels the task, which kills its worker process (and the process's children)
and lets Ray start a fresh one.

Code reaches the workers through Ray's ``runtime_env``: the config folder's modules, zipped
from an allow-list (``shipping.py``), are the job's ``working_dir``, which is each task's
current folder and first on its ``sys.path``. stepline itself must be installed where the
workers run.

Ray's calls block, and the processes a local instance starts die with the thread that
started them (Ray asks the kernel for it), so ``ray.init`` and ``ray.shutdown`` run on one
thread of this object's own that lives as long as the instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from stepline.errors import WorkerLost
from stepline.processes import is_alive
from stepline.workers.messages import Reply
from stepline.workers.remote import Work, run_shipped, worker_pid
from stepline.workers.shipping import bundle_code

ADDRESS_VARIABLE = "RAY_ADDRESS"
LOOPBACK = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": this node's address is 127.0.0.1
LOCAL_ENVIRONMENT: dict[str, str | None] = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "token",
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",  # workers run this Python, not `uv run`'s
    "RAY_task_oom_retries": "0",  # an item killed for memory fails its attempt, once
}
PAYLOADS_KEPT = 4
PROBE_S = 10.0  # how long the cluster's address may take to accept a connection
SCRATCH_PREFIX = "stepline-ray-"  # + the runner's pid: the folder of a runner that was killed


class RayCluster:
    """The run's Ray cluster, connected (or started) with its first attempt."""

    def __init__(self, *, address: str | None, workers: int, code_folder: Path) -> None:
        self.address = address or os.environ.get(ADDRESS_VARIABLE) or None
        self.workers = workers  # the CPUs of a local instance
        self.code_folder = code_folder
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="stepline-ray")
        self._opening = asyncio.Lock()
        self._task: Any = None  # the remote function, once connected
        self._scratch: Path | None = None  # the code zip and a local instance's files
        self._environment: dict[str, str | None] = {}  # what starting it changed, to undo
        self._loopback_was: bool | None = None
        self._payloads: OrderedDict[str, Any] = OrderedDict()  # step token -> its ObjectRef

    @property
    def local(self) -> bool:
        return self.address is None

    async def run(self, token: str, body: bytes, work: Work) -> Reply:
        """Run one attempt as a task; cancelling the await kills it (see above)."""
        task = await self.connect()
        import ray

        payload = self._payloads.get(token)
        if payload is None:
            payload = self._payloads[token] = ray.put(body)
            while len(self._payloads) > PAYLOADS_KEPT:
                self._payloads.popitem(last=False)
        self._payloads.move_to_end(token)
        ref = task.remote(token, payload, work)
        try:
            reply = await asyncio.wrap_future(ref.future())
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):  # already ended, or the cluster is gone
                ray.cancel(ref, force=True)
            raise
        except ray.exceptions.RayError as exc:  # the task never gave a reply
            raise WorkerLost(_lost(exc)) from None
        assert isinstance(reply, Reply)
        return reply

    async def close(self) -> None:
        """Disconnect; a local instance is stopped, its processes and files removed."""
        self._payloads.clear()
        loop = asyncio.get_running_loop()
        if self._task is not None or self._opening.locked():
            await loop.run_in_executor(self._thread, self._shutdown)
        self._thread.shutdown(wait=True)
        self._task = None
        for name, value in self._environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._environment.clear()
        if self._loopback_was is not None:
            from ray._private import ray_constants

            ray_constants.ENABLE_RAY_CLUSTER = self._loopback_was
            self._loopback_was = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    async def connect(self) -> Any:
        """The remote function, once the cluster is joined (or started)."""
        async with self._opening:
            if self._task is None:
                loop = asyncio.get_running_loop()
                self._task = await loop.run_in_executor(self._thread, self._connect)
            return self._task

    def _connect(self) -> Any:
        """On the cluster's own thread: start or join the cluster, with the code shipped."""
        # short: a local instance's socket paths must fit in 107 bytes
        _sweep(Path(tempfile.gettempdir()))
        self._scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))
        code = bundle_code(self.code_folder, self._scratch)
        loopback = self.local or _on_loopback(self.address or "")
        if loopback:  # for the processes it starts; this one's is set below, if imported
            self._set_environment({LOOPBACK: "0"})
        if self.local:
            token = secrets.token_hex(32)
            self._set_environment(
                LOCAL_ENVIRONMENT
                | {"RAY_AUTH_TOKEN": token, "RAY_AUTH_TOKEN_PATH": None, "RAY_ADDRESS": None}
            )
        import ray
        from ray._private import ray_constants

        if loopback:  # ray was imported before: it read the variable then
            self._loopback_was = ray_constants.ENABLE_RAY_CLUSTER
            ray_constants.ENABLE_RAY_CLUSTER = False
        _forget_token()  # an earlier instance's, in this process
        _quiet_driver()
        options: dict[str, Any] = {
            "runtime_env": {"working_dir": str(code.path)},
            "logging_level": logging.ERROR,
            "configure_logging": True,
        }
        if self.local:
            options |= {
                "address": "local",
                "num_cpus": self.workers,
                "include_dashboard": False,
                "_temp_dir": str(self._scratch / "ray"),
            }
        else:
            _probe(self.address or "")
            options["address"] = self.address
        # the instance's processes ignore a Ctrl-C at the terminal: the runner decides
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            with _quiet("ray"):  # its warning that this thread cannot set a SIGTERM handler
                context = ray.init(**options)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        address = getattr(context, "address_info", {}).get("gcs_address", "")
        if self.local and not str(address).startswith("127.0.0.1:"):
            ray.shutdown()
            raise WorkerLost("the local Ray instance did not listen on 127.0.0.1 only")
        warm = ray.remote(max_retries=0, num_cpus=1)(worker_pid)
        ray.get([warm.remote() for _ in range(self.workers)])
        return ray.remote(max_retries=0, num_cpus=1)(run_shipped)

    def _shutdown(self) -> None:
        if "ray" in sys.modules:
            import ray

            with contextlib.suppress(Exception):
                ray.shutdown()
            _forget_token()

    def _set_environment(self, values: dict[str, str | None]) -> None:
        for name, value in values.items():
            self._environment.setdefault(name, os.environ.get(name))
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _sweep(folder: Path) -> None:
    """Remove what runners killed with a local instance (kill -9 runs no cleanup) left."""
    for stale in folder.glob(f"{SCRATCH_PREFIX}*-*"):
        pid = stale.name.removeprefix(SCRATCH_PREFIX).partition("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not is_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _probe(address: str) -> None:
    """Fail at once when nothing listens at ``address``: Ray keeps trying a dead address for
    many minutes (13 measured here) before it gives up."""
    if address == "auto":
        return
    host, _, port = address.split("://")[-1].rpartition(":")
    if not port.isdigit():
        return  # Ray says what is wrong with it
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), PROBE_S):
            return
    except OSError as exc:
        raise ConnectionError(
            f"nothing answers at {address} ({exc.strerror or type(exc).__name__})"
        ) from None


def _on_loopback(address: str) -> bool:
    host = address.split("://")[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def _forget_token() -> None:
    """Make Ray read its mode and token from the environment again: it keeps the first it
    read, and each local instance has a token of its own."""
    with contextlib.suppress(ImportError, AttributeError):
        raylet = importlib.import_module("ray._raylet")  # compiled: no stubs
        raylet.Config.initialize("")
        raylet.AuthenticationTokenLoader.instance().reset_cache()


def _lost(exc: Exception) -> str:
    import ray

    if isinstance(exc, ray.exceptions.WorkerCrashedError | ray.exceptions.NodeDiedError):
        return f"its ray worker died while running it ({type(exc).__name__})"
    if isinstance(exc, ray.exceptions.OutOfMemoryError):
        return "ray killed its worker: the node ran low on memory (OutOfMemoryError)"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"ray could not run it: {type(exc).__name__}" + (f": {first}" if first else "")


def _quiet_driver() -> None:
    """Send what Ray forwards to the driver (workers' prints, the raylet's notes on a dead
    worker) to stderr: Ray writes some of it to stdout, where ``--json`` keeps its result."""
    from ray._private import worker

    forward = getattr(worker, "print_worker_logs", None)
    if forward is None or getattr(worker.print_to_stdstream, "_stepline", False):
        return

    def to_stderr(data: dict[str, Any], ignore_prefix: bool) -> None:
        forward(data, sys.stderr, ignore_prefix)

    to_stderr._stepline = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = to_stderr


@contextlib.contextmanager
def _quiet(name: str) -> Any:
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
