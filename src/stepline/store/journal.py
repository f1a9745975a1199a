"""How the runner persists ``RunState``: a snapshot, and the changes since, appended durably.

Rewriting the whole of ``state.json`` after every step costs a pipeline of n steps O(n) bytes
(and their serialisation) per step: 150 KB at step 200. Instead each transition appends one
line to ``state-changes.jsonl`` holding the run's header and only the steps that changed,
then fsyncs it; ``state.json`` is rewritten (atomically, as before) when a run starts and
ends, and after every ``COMPACT_AFTER`` appended lines, which then empty the log.

``load_state`` (``store/state.py``) reads the snapshot and applies the lines newer than the
snapshot's ``log_seq``, so every reader sees the same state as before. What a crash can leave:

- a last line cut off mid-write: it was never acknowledged, so the change it held is lost,
  exactly like a ``state.json`` write killed before its rename (the step runs again);
- a log not yet emptied after a snapshot: its lines are at or below the snapshot's
  ``log_seq`` and are skipped.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO

from stepline.faults import crash_point
from stepline.store.atomic import append_failed, fsync_dir, write_text_atomic
from stepline.store.state import RunState, change_log_path, now

COMPACT_AFTER = 64
"""Appended lines after which the next save rewrites state.json and empties the log."""


class StateJournal:
    """The one writer of a run's ``state.json`` and ``state-changes.jsonl``."""

    def __init__(self, state_path: Path) -> None:
        self.state_path = state_path
        self.log_path = change_log_path(self.state_path)
        self._log: BinaryIO | None = None
        self._appended = 0

    def snapshot(self, state: RunState) -> None:
        """Write the whole state, then empty the change log (its changes are in it now)."""
        created = self._log is None and not self.log_path.exists()
        log = self._open()
        state.updated_at = now()
        write_text_atomic(self.state_path, state.model_dump_json(indent=2) + "\n")
        if created:  # the log's own folder entry, before a line is trusted to it
            fsync_dir(self.log_path.parent)
        try:
            log.truncate(0)
            os.fsync(log.fileno())
        except OSError as exc:
            raise append_failed(self.log_path, exc) from exc
        self._appended = 0
        for step in state.steps:
            step.mark_saved()

    def record(self, state: RunState) -> None:
        """Append the run's header and the steps changed since the last save, durably."""
        if self._appended >= COMPACT_AFTER or self._log is None:
            self.snapshot(state)
            return
        state.log_seq += 1
        state.updated_at = now()
        changed = [step for step in state.steps if step.changed]
        line = (
            f'{{"seq":{state.log_seq},"run":{state.model_dump_json(exclude={"steps"})},'
            f'"steps":[{",".join(step.model_dump_json() for step in changed)}]}}\n'
        )
        end = self._log.tell()
        crash_point("before-append:" + self.log_path.name)
        try:
            self._log.write(line.encode("utf-8"))
            self._log.flush()
            os.fdatasync(self._log.fileno())
        except OSError as exc:  # the line may be in the file yet not durable: take it back
            state.log_seq -= 1
            with contextlib.suppress(OSError):
                self._log.truncate(end)
            raise append_failed(self.log_path, exc) from exc
        self._appended += 1
        for step in changed:
            step.mark_saved()

    def finish(self, state: RunState) -> None:
        """The run stops (completed, failed, paused...): one file again, no log beside it. A
        log whose removal a power cut undoes holds only changes the snapshot has."""
        self.snapshot(state)
        self.close()
        self.log_path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _open(self) -> BinaryIO:
        if self._log is None:
            try:
                self._log = self.log_path.open("ab")
            except OSError as exc:
                raise append_failed(self.log_path, exc) from exc
        return self._log
