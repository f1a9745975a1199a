"""One process per run: an exclusive ``flock`` on ``<run>/.lock`` for the life of the run.

The lock file is never deleted (deleting it would let two processes lock different inodes).
The holder writes its pid into the file so a second process can say who holds the run. The
kernel drops the lock when the holder dies, however it dies, so a killed run is free at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from stepline.errors import RunStoreError
from stepline.processes import is_alive

# Inspectors (list, show) probe the lock for a moment; a starting run retries briefly so
# such a probe never makes it fail.
_ACQUIRE_ATTEMPTS = 20
_ACQUIRE_PAUSE_S = 0.01


class RunLock:
    """An exclusive, non-blocking lock on one run folder."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        self._fd: int | None = None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        for attempt in range(_ACQUIRE_ATTEMPTS):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == _ACQUIRE_ATTEMPTS - 1:
                    os.close(fd)
                    holder = _read_pid(self.path)
                    who = f"process {holder}" if holder else "another process"
                    raise RunStoreError(
                        f'run "{self.run_id}" is in use by {who}',
                        hint="wait for it to finish, or stop that process first",
                    ) from None
                time.sleep(_ACQUIRE_PAUSE_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def is_locked(path: Path) -> bool:
    """Whether a live process holds the run (probes with a shared lock, released at once)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def holder(path: Path) -> int | None:
    """The pid of the live process holding the run, or None when nobody holds it.

    A holder writes its pid just after taking the lock, so a lock seen held with no pid (or
    the previous holder's) is re-read for a moment. Checking the lock as well as the pid is
    what keeps ``cancel`` from signalling a recycled pid left in the file by a dead holder.
    """
    for _ in range(_ACQUIRE_ATTEMPTS):
        if not is_locked(path):
            return None
        pid = _read_pid(path)
        if pid is not None and is_alive(pid):
            return pid
        time.sleep(_ACQUIRE_PAUSE_S)
    return None


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip() or "0") or None
    except (OSError, ValueError):
        return None
