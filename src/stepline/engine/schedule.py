"""Which steps may start now: the bookkeeping of the scheduler, apart from its awaiting.

The runner asks ``next_ready`` for the next unit whose dependencies are all done, starts it,
and tells ``finish`` when it ends; a unit is one step, or a fan-out step together with the
step that streams its items (``stream_items``: the two must run at once). Units are offered in
list order, so with one slot (``--jobs 1``), or when every step waits for the one before it,
the run follows the list exactly. Steps that are reused or skipped take no slot: they are
done the moment their dependencies are.

Pure and synchronous, so the rules are tested without running anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stepline.engine.graph import StepGraph
from stepline.engine.plan import Action, Decision


@dataclass(frozen=True)
class Unit:
    """What starts together: one step's decision, or a chain's two."""

    decisions: tuple[Decision, ...]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(decision.id for decision in self.decisions)

    @property
    def action(self) -> Action:
        return self.decisions[0].action

    @property
    def takes_a_slot(self) -> bool:
        return self.action is Action.RUN


def units_of(decisions: Sequence[Decision], streams: Sequence[bool]) -> list[Unit]:
    """The plan cut into units: a step that runs and whose next step runs too and streams its
    items (``streams[i]`` says step i has ``stream_items``) forms a chain with it."""
    units: list[Unit] = []
    position = 0
    while position < len(decisions):
        decision = decisions[position]
        following = decisions[position + 1] if position + 1 < len(decisions) else None
        if (
            decision.action is Action.RUN
            and following is not None
            and following.action is Action.RUN
            and streams[position + 1]
        ):
            units.append(Unit((decision, following)))
            position += 2
        else:
            units.append(Unit((decision,)))
            position += 1
    return units


class Schedule:
    """The units not started yet, the ones running, and the steps done (in any way).

    Each waiting unit counts the steps it still waits for, and each step knows the units that
    wait for it, so ending a step costs its number of dependents and finding the next unit a
    walk over the waiting ones: a pipeline of Python steps that each wait for every step
    before them stays quadratic, not cubic, in its length.
    """

    def __init__(self, units: Sequence[Unit], graph: StepGraph, slots: int) -> None:
        self.slots = slots
        self.stopped = [unit for unit in units if unit.action is Action.STOP]  # --to-step
        self._waiting = [unit for unit in units if unit.action is not Action.STOP]
        self._running: list[Unit] = []
        # by position in the plan (an int hashes faster than a unit of decisions)
        self._position = {unit: position for position, unit in enumerate(self._waiting)}
        self._left = [0] * len(self._waiting)
        self._waited_by: dict[str, list[int]] = {}
        for position, unit in enumerate(self._waiting):
            outside = {d for step_id in unit.ids for d in graph.dependencies[step_id]}
            outside -= set(unit.ids)
            self._left[position] = len(outside)
            for dependency in outside:
                self._waited_by.setdefault(dependency, []).append(position)
        self.holding = False  # set when nothing more may start (a critical failure, a stop)

    @property
    def running(self) -> tuple[Unit, ...]:
        return tuple(self._running)

    @property
    def waiting(self) -> tuple[Unit, ...]:
        return tuple(self._waiting)

    def next_ready(self) -> Unit | None:
        """The first unit in list order that may start now, marked as started; None when
        none may (all wait for something, every slot is taken, or the schedule holds)."""
        if self.holding:
            return None
        free = len(self._running) < self.slots
        for index, unit in enumerate(self._waiting):
            if self._left[self._position[unit]] == 0 and (free or not unit.takes_a_slot):
                del self._waiting[index]
                if unit.takes_a_slot:
                    self._running.append(unit)
                return unit
        return None

    def finish(self, unit: Unit) -> None:
        """``unit`` ended (completed, failed, reused or skipped): its dependents may start."""
        if unit in self._running:
            self._running.remove(unit)
        for step_id in unit.ids:
            for position in self._waited_by.pop(step_id, ()):
                self._left[position] -= 1
