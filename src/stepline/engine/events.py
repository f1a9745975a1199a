"""Events: what the runner tells the outside world while it works.

Each event is appended to the run's ``events.jsonl`` and handed to an optional listener (the
CLI's progress display). Listeners only observe; they never steer the run. ``follow_events``
reads the file back, and keeps reading while the run's process holds its lock (``logs -f``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from stepline import clock
from stepline.store.lock import is_locked
from stepline.store.rundir import RunDir
from stepline.store.state import now


class EventType(StrEnum):
    RUN_STARTED = "run_started"
    RUN_COMPLETED = "run_completed"
    RUN_FAILED = "run_failed"
    RUN_PAUSED = "run_paused"
    RUN_INTERRUPTED = "run_interrupted"
    STEP_STARTED = "step_started"
    STEP_COMPLETED = "step_completed"
    STEP_FAILED = "step_failed"
    STEP_SKIPPED = "step_skipped"
    STEP_REUSED = "step_reused"
    PAUSE_PASSED = "pause_passed"
    OUTPUT_EDITED = "output_edited"
    LOG = "log"
    LLM_PROGRESS = "llm_progress"  # transient: shown live, never written to events.jsonl
    ITEM_PROGRESS = "item_progress"  # sampled: written at most every few seconds per step


TRANSIENT = frozenset({EventType.LLM_PROGRESS, EventType.ITEM_PROGRESS})
# A fan-out's progress is written now and then (and when the step's items are all through),
# so ``list`` and ``logs`` can show how far a running fan-out has come without a line per item.
ITEM_PROGRESS_EVERY_S = 1.0
_ENDS_PROGRESS = frozenset(
    {
        EventType.STEP_COMPLETED,
        EventType.STEP_FAILED,
        EventType.RUN_COMPLETED,
        EventType.RUN_FAILED,
        EventType.RUN_PAUSED,
        EventType.RUN_INTERRUPTED,
    }
)


@dataclass(frozen=True)
class Event:
    """One thing that happened; ``step`` is None for run-level events."""

    type: EventType
    run_id: str
    step: str | None = None
    number: int | None = None
    total: int | None = None
    title: str | None = None
    message: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    time: str = field(default_factory=lambda: now().isoformat().replace("+00:00", "Z"))

    def to_json(self) -> dict[str, Any]:
        record = {key: value for key, value in asdict(self).items() if value not in (None, {})}
        record["type"] = self.type.value
        return record


Listener = Callable[[Event], None]


class EventLog:
    """Appends events to the run folder and forwards them to the listener.

    Item progress is sampled: the first of a step's is written, then at most one every
    ``ITEM_PROGRESS_EVERY_S``, and the one that says every item is through. A sample held back
    is written when its interval ends (a timer on the running loop), so the file is never
    more than that interval behind, even when a fan-out stalls; a step's end drops it.
    """

    def __init__(self, run_dir: RunDir, listener: Listener | None = None) -> None:
        self._run_dir = run_dir
        self._listener = listener
        self._written_at: dict[str | None, float] = {}
        self._held: dict[str | None, Event] = {}
        self._timers: dict[str | None, asyncio.TimerHandle] = {}

    def emit(self, event: Event) -> None:
        if event.type is EventType.ITEM_PROGRESS:
            self._sample(event)
        elif event.type not in TRANSIENT:
            if event.type in _ENDS_PROGRESS:
                self._drop_held(None if event.type.value.startswith("run_") else event.step)
            self._run_dir.append_event(event.to_json())
        if self._listener is not None:
            self._listener(event)

    def _sample(self, event: Event) -> None:
        step, moment = event.step, clock.monotonic()
        total = event.data.get("total", 0)
        through = event.data.get("done", 0) + event.data.get("failed", 0)
        last = self._written_at.get(step)
        if (
            (total > 0 and through >= total)
            or last is None
            or moment - last >= ITEM_PROGRESS_EVERY_S
        ):
            self._drop_held(step)
            self._write_progress(event)
            return
        self._held[step] = event
        if step not in self._timers:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop to wait on: the next sample will be written
                return
            wait = last + ITEM_PROGRESS_EVERY_S - moment
            self._timers[step] = loop.call_later(wait, self._write_held, step)

    def _write_held(self, step: str | None) -> None:
        self._timers.pop(step, None)
        event = self._held.pop(step, None)
        if event is not None:
            self._write_progress(event)

    def _write_progress(self, event: Event) -> None:
        self._written_at[event.step] = clock.monotonic()
        self._run_dir.append_event(event.to_json())

    def _drop_held(self, step: str | None) -> None:
        """Forget held samples of ``step`` (of every step for None): they are out of date."""
        for key in list(self._held) if step is None else [step]:
            self._held.pop(key, None)
            timer = self._timers.pop(key, None)
            if timer is not None:
                timer.cancel()


def follow_events(
    run_dir: RunDir, *, follow: bool = False, poll_s: float = 0.2
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each complete line of ``events.jsonl`` with its parsed record, oldest first.

    With ``follow``, keep reading while a process holds the run's lock, and stop once the
    lock is free and the file is read to its end. The lock is checked *before* each read, so
    the events written before the holder exited are never missed. A line still being
    written is left for the next read; a line that is not JSON (torn by a crash) is skipped.
    """
    offset = 0
    while True:
        running = follow and is_locked(run_dir.lock_path)
        lines, offset = _complete_lines(run_dir.events_path, offset)
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                yield line, record
        if not running:
            return
        time.sleep(poll_s)


def _complete_lines(path: Path, offset: int) -> tuple[list[str], int]:
    """The whole lines after byte ``offset``, and the offset after the last of them."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            chunk = handle.read()
    except FileNotFoundError:
        return [], offset
    end = chunk.rfind(b"\n") + 1
    text = chunk[:end].decode("utf-8", errors="replace")
    return [line for line in text.splitlines() if line.strip()], offset + end
