"""The process groups a run's shell steps started, noted on disk while they run.

A shell step runs in a process group of its own, and a runner that stops in an orderly way
(a timeout, Ctrl-C, SIGTERM) stops that group itself. A runner killed outright (``pipeline
cancel --force``, ``kill -9``, the OOM killer) cannot, and the group goes on running: a
command still writing the files the resumed run is about to write again. So each group is
noted as a file in the run folder (``processes/<pid>``, holding the process's start time)
while it runs; ``cancel --force`` and the next run of that folder stop what is still noted.

The start time is what makes stopping safe: a noted pid that the system has since given to
another process has another start time, and is left alone. Linux only (``/proc``); elsewhere
nothing is noted. Best effort by design: a runner killed between starting the process and
noting it leaves that one group unnoted.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def is_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but owned by another user
        return True
    return True


class ProcessGroups:
    """The noted process groups of one run folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def note(self, pid: int) -> None:
        """Note the group led by ``pid`` (a process started with a new session)."""
        stat = _stat(pid)
        if stat is None:
            return  # no /proc, or it has ended already
        started, _ = stat
        with contextlib.suppress(OSError):  # best effort: never fail a step over this
            self.folder.mkdir(exist_ok=True)
            (self.folder / str(pid)).write_text(started, encoding="ascii")

    def forget(self, pid: int) -> None:
        with contextlib.suppress(OSError):
            (self.folder / str(pid)).unlink()

    def stop_all(self) -> int:
        """SIGKILL every noted group whose leader is still the process that was noted; the
        number stopped. Only for a folder no runner holds: a live runner's groups are its."""
        stopped = 0
        try:
            noted = list(self.folder.iterdir())
        except OSError:
            return 0
        for path in noted:
            with contextlib.suppress(OSError, ValueError):
                pid = int(path.name)
                if _stat(pid) == (path.read_text(encoding="ascii"), pid):  # same leader
                    os.killpg(pid, signal.SIGKILL)
                    stopped += 1
            with contextlib.suppress(OSError):
                path.unlink()
        return stopped


def _stat(pid: int) -> tuple[str, int] | None:
    """The process's start time and process group, from ``/proc/<pid>/stat`` (fields 22 and
    5; the fields are counted after the command name, which may hold spaces)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()
    if len(fields) < 20:
        return None
    return fields[19], int(fields[2])
