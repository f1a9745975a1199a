"""A worker process of the ``processes`` executor: ``python -m stepline.workers.process_main``.

It reads frames from the runner on its stdin and answers on its stdout, which it takes for
itself at once: what the user's code prints goes to stderr, so a stray ``print`` cannot break
a reply. It ignores SIGINT (Ctrl-C reaches the runner, which decides), dies with the runner
(Linux: ``PR_SET_PDEATHSIG``; elsewhere when its stdin closes) and never retries anything.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
import sys
from typing import BinaryIO

from stepline.workers.messages import AttemptMessage, StepMessage, read_frame, write_frame
from stepline.workers.remote import run_attempt

PR_SET_PDEATHSIG = 1
RUNNER_PID = "STEPLINE_RUNNER_PID"  # set by the pool that starts the worker


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    requests, replies = _take_stdio()
    worker = f"worker process {os.getpid()}"
    token, payload = None, None
    while (message := read_frame(requests)) is not None:
        if isinstance(message, StepMessage):
            token, payload = message.token, pickle.loads(message.body)
        elif isinstance(message, AttemptMessage):
            assert payload is not None and message.token == token, "attempt before its step"
            write_frame(replies, run_attempt(payload, message.item, worker=worker))


def _take_stdio() -> tuple[BinaryIO, BinaryIO]:
    """The pipes to the runner, moved off fds 0 and 1: stdin becomes /dev/null and stdout
    the process's stderr, for the user's code."""
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return requests, replies


def _die_with_parent() -> None:
    """Linux: be killed when the runner dies, even in the middle of an item."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if str(os.getppid()) != os.environ.get(RUNNER_PID, str(os.getppid())):
        os._exit(1)  # the runner died before the line above


if __name__ == "__main__":
    main()
