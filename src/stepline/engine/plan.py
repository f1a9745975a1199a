"""Which steps run and why: a pure function over what the config and the run's state say.

The runner gathers the facts (hashes of the current spec and of the outputs on disk) into
``StepFacts``; ``plan_run`` turns them into one ``Decision`` per step. ``--dry-run`` prints the
same decisions the runner then follows, so the plan never disagrees with the run.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from stepline.store.items import ItemCounts
from stepline.store.state import INPUT_KEY


class Action(StrEnum):
    RUN = "run"
    REUSE = "reuse"
    SKIP = "skip"
    STOP = "stop"


@dataclass(frozen=True)
class StepFacts:
    """What is known about one step when a run (re)starts."""

    id: str
    enabled: bool = True
    previous_status: str | None = None
    output_present: bool = False
    spec_hash: str = ""
    previous_spec_hash: str | None = None
    config_changes: tuple[str, ...] = ()  # which parts of the spec changed, where known
    previous_reads: Mapping[str, str] = field(default_factory=dict)
    current_reads: Mapping[str, str | None] = field(default_factory=dict)
    depends_on: frozenset[str] = frozenset()
    failed_items: int = 0  # fan-out items that failed last time and should be tried again
    items: ItemCounts | None = None  # an unfinished fan-out step's checkpoints
    # when: what it gives with the outputs on disk now (None: no condition, or not known
    # before the run), the steps it reads, and what it gave last time
    condition: bool | None = None
    condition_reads: frozenset[str] = frozenset()
    previous_condition: bool | None = None


@dataclass(frozen=True)
class Decision:
    number: int
    id: str
    action: Action
    reason: str


def plan_run(
    steps: Sequence[StepFacts],
    *,
    from_step: Collection[str] | None = None,
    to_step: Collection[str] | None = None,
) -> list[Decision]:
    """Decide each step in order; a step re-runs when anything it depends on re-runs.

    ``from_step`` is what ``--from-step`` re-runs (the step and every step that waits for
    it); ``to_step`` what ``--to-step`` runs at most (the step and every step it waits for).
    """
    decisions: list[Decision] = []
    rerunning: set[str] = set()
    for index, facts in enumerate(steps):
        action, reason = _decide(facts, rerunning, from_step, to_step)
        if action is Action.RUN:
            rerunning.add(facts.id)
        decisions.append(Decision(index + 1, facts.id, action, reason))
    return decisions


def _decide(
    facts: StepFacts,
    rerunning: set[str],
    from_step: Collection[str] | None,
    to_step: Collection[str] | None,
) -> tuple[Action, str]:
    if to_step is not None and facts.id not in to_step:
        return Action.STOP, "not needed by --to-step"
    if not facts.enabled:
        return Action.SKIP, "disabled in the config"
    if facts.condition is not None and not facts.condition_reads & rerunning:
        if not facts.condition:
            ran = facts.previous_status == "completed"
            return Action.SKIP, "when now gives false" if ran else "when gives false"
        if facts.previous_condition is False:
            return Action.RUN, "when now gives true"
    if from_step is not None and facts.id in from_step:
        return Action.RUN, "--from-step"
    if from_step is not None and facts.previous_status == "completed" and facts.output_present:
        return Action.REUSE, "not downstream of --from-step"
    if facts.previous_status == "skipped" and facts.previous_condition is False:
        return Action.RUN, "when gave false last time; asked again"
    if facts.previous_status != "completed":
        return Action.RUN, _not_done_reason(facts.previous_status, facts.items)
    if not facts.output_present:
        return Action.RUN, "its output file is missing"
    if facts.spec_hash != facts.previous_spec_hash:
        return Action.RUN, _config_reason(facts.config_changes)
    upstream = sorted(facts.depends_on & rerunning)
    if upstream:
        return Action.RUN, f"upstream step {upstream[0]} re-runs"
    for key, previous in sorted(facts.previous_reads.items()):
        if facts.current_reads.get(key) != previous:
            return Action.RUN, _changed_reason(key)
    if facts.failed_items:
        return Action.RUN, f"{facts.failed_items} failed item(s) to try again"
    return Action.REUSE, "completed, unchanged"


def _config_reason(changes: tuple[str, ...]) -> str:
    """``its config changed: prompt (prompts/extract.md), model``; a record made before the
    parts were kept says only that it changed."""
    if not changes:
        return "its config changed"
    more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
    return "its config changed: " + ", ".join(changes[:3]) + more


def _not_done_reason(status: str | None, items: ItemCounts | None = None) -> str:
    """Why a step that did not complete runs; with checkpoints, how far its items got, so
    a fan-out stopped by Ctrl-C (left pending) reads as one stopped by a kill (left
    running): neither is "not run yet"."""
    if items is not None and status == "failed":
        return f"failed last time ({items.summary})"
    if items is not None:
        return f"unfinished: {items.summary}"
    return {
        None: "not run yet",
        "pending": "not run yet",
        "running": "interrupted while running",
        "failed": "failed last time",
        "skipped": "not run yet",
    }.get(status, "not run yet")


def _changed_reason(key: str) -> str:
    if key == INPUT_KEY:
        return "the input changed"
    return f"the output of {key} changed"
