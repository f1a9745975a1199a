"""Clusters the tests start once per session: a dask.distributed cluster on 127.0.0.1.

It runs in a process of its own (its own session, so no test's signal reaches it), prints its
scheduler's address, and closes when its stdin does; ``stop`` then waits for it and kills
its process group if it lingers. Its workers see ``ON_TEST_CLUSTER=1``, which lets a test
make a module importable in the runner but not on the workers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

DASK_CLUSTER = """
import sys

import dask
from distributed import LocalCluster

dask.config.set({
    "distributed.scheduler.allowed-failures": 0,
    "distributed.scheduler.worker-saturation": 1.0,
})
cluster = LocalCluster(
    n_workers=2,
    threads_per_worker=1,
    host="127.0.0.1",
    dashboard_address=None,
    scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
)
print(cluster.scheduler_address, flush=True)
sys.stdin.read()
cluster.close()
"""


class DaskTestCluster:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", DASK_CLUSTER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
            env={**os.environ, "ON_TEST_CLUSTER": "1"},
        )
        assert self.process.stdout is not None
        self.address = self.process.stdout.readline().strip()
        assert self.address.startswith("tcp://127.0.0.1:"), self.address

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):  # the cluster's workers too
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
