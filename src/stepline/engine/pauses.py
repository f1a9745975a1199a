"""Pause points: how a run stops for a person to review (and edit) a step's output.

The engine never talks to a terminal. It hands a ``PausePoint`` to a ``Pauser`` supplied by
the caller (the CLI asks on the terminal); without one, pause points are passed and logged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class PauseMode(StrEnum):
    ASK = "ask"  # ask a person when a prompt is available, else pass
    NEVER = "never"  # --no-pause / PIPELINE_NO_PAUSE: pass and log
    ALWAYS = "always"  # --pause: stop at every pause point (exit 3)


@dataclass(frozen=True)
class PausePoint:
    """A review point after a step; ``problem`` explains why the prompt is shown again."""

    run_id: str
    step_id: str
    number: int
    title: str
    output_path: Path
    problem: str | None = None
    note: str | None = None  # something to know before editing (a replayed run's cassette)


Pauser = Callable[[PausePoint], bool]
"""Asks a person at a pause point: True continues, False stops the run (status paused)."""
