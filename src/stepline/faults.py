"""Named crash points, for tests that prove what a crash at an exact moment leaves behind.

A random ``kill -9`` rarely lands in the narrow windows that matter most; these points let a
test stop the process dead (SIGKILL to itself: no cleanup, no ``finally``) exactly there:

- ``item-intent-committed``: a fan-out item's intent row is committed, its LLM call not sent;
- ``reply-received``: a provider's reply is in memory, nothing about it committed yet;
- ``before-rename:<file name>``: an atomic write's temp file is complete and fsynced, the
  rename that would publish it not done (``before-rename:state.json`` is mid state write);
- ``before-append:<file name>``: a state change is about to be appended to the run's
  change log (``before-append:state-changes.jsonl``), the step's output already written;
- ``batch-created``: the provider has created a batch, its id not yet committed;
- ``batch-polled``: a batch's id is committed and it has been polled once.

Nothing in a config, the environment or the command line can arm one: only code running in the
process that calls ``arm`` (a test's wrapper around ``stepline.cli.app.main``).
"""

from __future__ import annotations

import os
import signal

_armed: str | None = None
_passes_left = 0


def arm(point: str, *, after: int = 0) -> None:
    """Crash at ``point`` once it has been passed ``after`` times."""
    global _armed, _passes_left
    _armed, _passes_left = point, after


def crash_point(point: str) -> None:
    """Die here if this point is armed (and its passes are used up)."""
    global _passes_left
    if _armed != point:
        return
    if _passes_left:
        _passes_left -= 1
        return
    os.kill(os.getpid(), signal.SIGKILL)
