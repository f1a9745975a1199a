"""What a run takes in and gives back: the outside world's part in it (``Hooks``), a run
ready to execute (``PreparedRun``) and how it ended (``RunResult``).

Apart from the runner so that the modules that build runs (``prepare``, ``estimates``) and
the callers that read results need not import the loop and all it imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stepline.engine.events import Listener
from stepline.engine.graph import StepGraph
from stepline.engine.interrupts import Interrupts
from stepline.engine.pauses import PauseMode, Pauser
from stepline.engine.plan import Decision
from stepline.engine.references import StepNeeds
from stepline.providers.pool import ProviderFactory
from stepline.spec import PipelineSpec
from stepline.steps import InputData
from stepline.store.rundir import RunDir
from stepline.store.state import RunState, RunStatus, StepStatus


@dataclass
class Hooks:
    """How the outside world takes part in a run; all optional."""

    listener: Listener | None = None
    pauser: Pauser | None = None
    pause_mode: PauseMode = PauseMode.ASK
    provider_factory: ProviderFactory | None = None
    interrupts: Interrupts = field(default_factory=Interrupts)


@dataclass
class PreparedRun:
    """A run ready to execute: its spec, folder, state and the plan to follow."""

    spec: PipelineSpec
    run_dir: RunDir
    state: RunState
    input: InputData
    needs: dict[str, StepNeeds]
    spec_hashes: dict[str, str]
    variables: dict[str, Any]
    decisions: list[Decision]
    graph: StepGraph  # which steps wait for which
    refresh_cache: bool = False  # --no-cache: skip cache reads, store fresh replies
    replay: Path | None = None  # --replay: answer LLM steps from this cassette only
    record: Path | None = None  # --record: append real completions to this cassette
    concurrency: int | None = None  # --concurrency: items at once in every fan-out step
    skip_failed: bool = False  # --skip-failed: keep failed items failed instead of retrying
    fresh_items: bool = False  # --fresh-items: ignore item checkpoints, redo every item
    budget_usd: float | None = None  # --max-cost, else budget.max_usd: what LLM calls may cost
    spec_parts: dict[str, dict[str, str]] = field(default_factory=dict)  # by step: see fingerprint
    to_step: str | None = None  # --to-step: the id of the last step that runs
    jobs: int | None = None  # --jobs: steps at once (else the config's max_parallel_steps)
    executor: str | None = None  # --executor: where every Python and shell step runs


@dataclass
class RunResult:
    """How a run ended. ``exit_code`` follows the CLI's contract (0, 1, 3, 130, 143)."""

    run_id: str
    run_dir: Path
    status: RunStatus
    exit_code: int
    state: RunState
    decisions: list[Decision]
    message: str | None = None

    def to_json(self) -> dict[str, Any]:
        """What ``pipeline run --json`` and ``resume --json`` print."""
        return {
            "run_id": self.run_id,
            "status": self.status.value,
            "run_dir": str(self.run_dir),
            "exit_code": self.exit_code,
            "message": self.message,
            "steps": [step.model_dump(mode="json") for step in self.state.steps],
        }

    @property
    def outputs(self) -> dict[str, Any]:
        """Each completed step's output value, by step id (read from the run folder)."""
        run_dir = RunDir(self.run_dir)
        return {
            step.id: run_dir.read_output(step.output)
            for step in self.state.steps
            if step.status == StepStatus.COMPLETED and step.output
        }
