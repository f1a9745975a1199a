"""Clusters the tests start once per session, on 127.0.0.1: dask.distributed and Ray.

It runs in a process of its own (its own session, so no test's signal reaches it), prints its
scheduler's address, and closes when its stdin does; ``stop`` then waits for it and kills
its process group if it lingers. Its workers see ``ON_TEST_CLUSTER=1``, which lets a test
make a module importable in the runner but not on the workers.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


class RayTestCluster:
    """A Ray head node on 127.0.0.1 with two CPUs and a token of its own (``ray start
    --block``, in its own session; stopped by killing its process group)."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(16)
        self.folder = tempfile.mkdtemp(prefix="slray-")  # short: socket paths < 108 bytes
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        self.environment = {
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.token,
        }
        ray = str(Path(sys.executable).with_name("ray"))
        self.process = subprocess.Popen(
            [
                ray,
                "start",
                "--head",
                "--block",
                f"--port={port}",
                "--num-cpus=2",
                "--node-ip-address=127.0.0.1",
                "--include-dashboard=false",
                "--disable-usage-stats",
                f"--temp-dir={self.folder}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **self.environment, "ON_TEST_CLUSTER": "1"},
        )
        deadline = time.monotonic() + 60
        while not self._listening(port):
            assert self.process.poll() is None, "ray start exited"
            assert time.monotonic() < deadline, "the Ray head did not start in 60 s"
            time.sleep(0.2)

    @staticmethod
    def _listening(port: int) -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):  # its raylet, gcs and workers too
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
