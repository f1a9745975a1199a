"""Events: what the runner tells the outside world while it works.

Each event is appended to the run's ``events.jsonl`` and handed to an optional listener (the
CLI's progress display). Listeners only observe; they never steer the run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

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
    ITEM_PROGRESS = "item_progress"  # transient, like llm_progress


TRANSIENT = frozenset({EventType.LLM_PROGRESS, EventType.ITEM_PROGRESS})


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
    """Appends events to the run folder and forwards them to the listener."""

    def __init__(self, run_dir: RunDir, listener: Listener | None = None) -> None:
        self._run_dir = run_dir
        self._listener = listener

    def emit(self, event: Event) -> None:
        if event.type not in TRANSIENT:
            self._run_dir.append_event(event.to_json())
        if self._listener is not None:
            self._listener(event)
