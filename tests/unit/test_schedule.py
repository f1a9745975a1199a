"""Which units may start: list order among the ready ones, slots, chains that start together,
reused and skipped steps that take no slot, and holding (pure: nothing runs)."""

from __future__ import annotations

from stepline.engine.graph import StepGraph
from stepline.engine.plan import Action, Decision
from stepline.engine.schedule import Schedule, units_of


def decide(*actions: tuple[str, Action]) -> list[Decision]:
    return [Decision(number, step_id, action, "") for number, (step_id, action) in
            enumerate(actions, start=1)]  # fmt: skip


def graph(**dependencies: set[str]) -> StepGraph:
    return StepGraph(tuple(dependencies), {k: frozenset(v) for k, v in dependencies.items()})


def drain(schedule: Schedule) -> list[tuple[str, ...]]:
    """Start what may start, in the order offered."""
    started = []
    while (unit := schedule.next_ready()) is not None:
        started.append(unit.ids)
    return started


RUN, REUSE, SKIP, STOP = Action.RUN, Action.REUSE, Action.SKIP, Action.STOP


def test_ready_units_start_in_list_order_up_to_the_slots() -> None:
    decisions = decide(("a", RUN), ("b", RUN), ("c", RUN), ("join", RUN))
    schedule = Schedule(
        units_of(decisions, [False] * 4),
        graph(a=set(), b=set(), c=set(), join={"a", "b", "c"}),
        slots=2,
    )

    assert drain(schedule) == [("a",), ("b",)]
    first = schedule.running[0]
    schedule.finish(first)
    assert drain(schedule) == [("c",)]  # the join still waits for b and c
    for unit in schedule.running:
        schedule.finish(unit)
    assert drain(schedule) == [("join",)]
    assert schedule.waiting == ()


def test_one_slot_follows_the_list_exactly() -> None:
    decisions = decide(("a", RUN), ("b", RUN), ("c", RUN))
    schedule = Schedule(units_of(decisions, [False] * 3), graph(a=set(), b=set(), c=set()), 1)

    order = []
    while (unit := schedule.next_ready()) is not None:
        order.append(unit.ids)
        schedule.finish(unit)

    assert order == [("a",), ("b",), ("c",)]


def test_reused_and_skipped_steps_take_no_slot_but_wait_for_their_dependencies() -> None:
    decisions = decide(("a", RUN), ("b", REUSE), ("c", SKIP), ("d", REUSE))
    schedule = Schedule(
        units_of(decisions, [False] * 4),
        graph(a=set(), b=set(), c=set(), d={"a"}),
        slots=1,
    )

    assert drain(schedule) == [("a",), ("b",), ("c",)]  # all slots taken by a; b, c need none
    schedule.finish(schedule.running[0])
    assert drain(schedule) == [("d",)]


def test_a_streaming_pair_is_one_unit_that_waits_for_what_either_step_waits_for() -> None:
    decisions = decide(("x", RUN), ("up", RUN), ("down", RUN))
    units = units_of(decisions, [False, False, True])
    schedule = Schedule(units, graph(x=set(), up=set(), down={"up", "x"}), slots=4)

    assert [unit.ids for unit in units] == [("x",), ("up", "down")]
    assert drain(schedule) == [("x",)]  # "down" also reads x
    schedule.finish(schedule.running[0])
    assert drain(schedule) == [("up", "down")]


def test_a_stream_is_not_a_pair_unless_both_steps_run() -> None:
    decisions = decide(("up", REUSE), ("down", RUN))

    assert [unit.ids for unit in units_of(decisions, [False, True])] == [("up",), ("down",)]


def test_stopped_steps_never_start_and_holding_starts_nothing() -> None:
    decisions = decide(("a", RUN), ("b", STOP), ("c", RUN))
    schedule = Schedule(units_of(decisions, [False] * 3), graph(a=set(), b=set(), c=set()), 4)

    assert [unit.ids for unit in schedule.stopped] == [("b",)]
    assert drain(schedule) == [("a",), ("c",)]

    held = Schedule(units_of(decisions, [False] * 3), graph(a=set(), b=set(), c=set()), 4)
    held.holding = True
    assert drain(held) == []
    assert [unit.ids for unit in held.waiting] == [("a",), ("c",)]
