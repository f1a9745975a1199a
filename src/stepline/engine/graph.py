"""The run as a graph: which steps each step must wait for, found before step 1 runs.

A step waits for the steps its templates read (``references.py`` finds them) and for those
its ``needs:`` lists. What cannot be known before a step runs is assumed to be everything:
a Python or shell step without ``needs:`` may read any earlier output (``ctx.steps``) or
file, and a template that passes ``run.dir`` on or computes ``steps[name]`` may read any
earlier output, so each waits for every step before it. No step ever waits for a later one,
so list order is always a valid order, and a pipeline in which every step waits for the one
before it runs exactly as a list does.

Pure: the scheduler (``schedule.py``), the planner's ``--from-step`` / ``--to-step`` and the
dry run's graph all read the same ``StepGraph``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import cached_property

from stepline.engine.references import StepNeeds
from stepline.spec import PipelineSpec, PythonStep, ShellStep, StepBase


@dataclass(frozen=True)
class StepGraph:
    """Each step's direct dependencies, by id, in the config's order."""

    order: tuple[str, ...]
    dependencies: Mapping[str, frozenset[str]]
    waits_for_all: frozenset[str] = frozenset()  # steps that wait for every step before them

    @cached_property
    def dependents(self) -> dict[str, frozenset[str]]:
        """The steps that wait for each step directly."""
        found: dict[str, set[str]] = {step_id: set() for step_id in self.order}
        for step_id, dependencies in self.dependencies.items():
            for dependency in dependencies:
                found[dependency].add(step_id)
        return {step_id: frozenset(ids) for step_id, ids in found.items()}

    def downstream(self, step_id: str) -> frozenset[str]:
        """Every step that waits for ``step_id``, directly or through others."""
        return self._closure(step_id, self.dependents)

    def upstream(self, step_id: str) -> frozenset[str]:
        """Every step ``step_id`` waits for, directly or through others."""
        return self._closure(step_id, self.dependencies)

    @staticmethod
    def _closure(start: str, edges: Mapping[str, frozenset[str]]) -> frozenset[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for neighbour in edges[todo.pop()]:
                if neighbour not in seen:
                    seen.add(neighbour)
                    todo.append(neighbour)
        return frozenset(seen)

    def waves(self, among: Collection[str] | None = None) -> list[list[str]]:
        """The steps of ``among`` (default: all) grouped by how soon each can start: wave 1
        waits for none of them, wave 2 for some of wave 1, and so on. Steps of one wave can
        run together; steps outside ``among`` (reused, skipped) count as already done."""
        levels = self._levels(among)
        waves: list[list[str]] = [[] for _ in range(max(levels.values(), default=0))]
        for step_id in self.order:
            if step_id in levels:
                waves[levels[step_id] - 1].append(step_id)
        return waves

    def _levels(self, among: Collection[str] | None) -> dict[str, int]:
        chosen = set(self.order if among is None else among)
        levels: dict[str, int] = {}
        for step_id in self.order:  # dependencies come first in the list
            if step_id in chosen:
                before = [levels[d] for d in self.dependencies[step_id] if d in levels]
                levels[step_id] = 1 + max(before, default=0)
        return levels

    def critical_path(
        self, among: Collection[str] | None = None, cost: Mapping[str, float] | None = None
    ) -> list[str]:
        """The chain of ``among`` that takes longest, each step costing ``cost[id]`` (default
        1: the longest chain of steps); the earliest such chain in the list on a tie."""
        chosen = set(self.order if among is None else among)
        length: dict[str, float] = {}
        previous: dict[str, str | None] = {}
        for step_id in self.order:
            if step_id not in chosen:
                continue
            before = [d for d in self.order if d in self.dependencies[step_id] and d in length]
            longest = max(before, key=lambda d: length[d], default=None)
            own = 1.0 if cost is None else cost.get(step_id, 1.0)
            length[step_id] = own + (length[longest] if longest is not None else 0.0)
            previous[step_id] = longest
        if not length:
            return []
        end: str | None = max(length, key=lambda step_id: length[step_id])
        path: list[str] = []
        while end is not None:
            path.append(end)
            end = previous[end]
        return path[::-1]


def step_graph(spec: PipelineSpec, needs: Mapping[str, StepNeeds]) -> StepGraph:
    """The graph of ``spec``, from what ``analyse_spec`` found each step reads."""
    dependencies: dict[str, frozenset[str]] = {}
    waits_for_all: set[str] = set()
    for index, step in enumerate(spec.steps):
        earlier = frozenset(spec.step_ids[:index])
        if _waits_for_all(step, needs[step.id]):
            dependencies[step.id] = earlier
            waits_for_all.add(step.id)
        else:
            dependencies[step.id] = needs[step.id].steps | frozenset(step.needs or ())
    return StepGraph(tuple(spec.step_ids), dependencies, frozenset(waits_for_all))


def _waits_for_all(step: StepBase, needs: StepNeeds) -> bool:
    """Whether what ``step`` reads is known only when it runs (see the module docstring)."""
    if isinstance(step, PythonStep | ShellStep) and step.needs is None:
        return True
    return needs.reads_everything and not isinstance(step, PythonStep)
