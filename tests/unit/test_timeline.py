"""The timeline's layout: steps placed by their start, long idle gaps shortened, unfinished
attempts of dead processes left out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stepline.reports.overview import MIN_GAP_S, build_timeline
from stepline.store.state import RunState, StepState, StepStatus

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def step(number: int, start: float | None, end: float | None, status: StepStatus) -> StepState:
    return StepState(
        number=number,
        id=f"s{number}",
        kind="python",
        status=status,
        started_at=None if start is None else T0 + timedelta(seconds=start),
        finished_at=None if end is None else T0 + timedelta(seconds=end),
    )


def state(*steps: StepState) -> RunState:
    return RunState(
        run_id="r",
        pipeline="p",
        config_path=None,
        config_hash="h",
        input_path="in",
        input_copy="input/original",
        input_hash="h",
        steps=list(steps),
    )


def test_steps_are_placed_on_the_clock_and_a_paused_day_is_cut_short():
    done = StepStatus.COMPLETED
    timeline = build_timeline(
        state(step(1, 0, 2, done), step(2, 3, 5, done), step(3, 86_405, 86_409, done)),
        at=T0 + timedelta(days=2),
    )

    placed = [(bar.step, bar.offset_s, bar.duration_s) for bar in timeline.bars]
    assert placed == [("s1", 0, 2), ("s2", 3, 2), ("s3", 5 + MIN_GAP_S, 4)]  # 1 s gap kept
    assert timeline.gaps_cut == 1 and timeline.span_s == 9 + MIN_GAP_S


def test_a_running_step_ends_now_and_an_abandoned_one_is_left_out():
    timeline = build_timeline(
        state(
            step(1, 0, 1, StepStatus.COMPLETED),
            step(2, 1, None, StepStatus.FAILED),  # a crash before finished_at was written
            step(3, 1, None, StepStatus.RUNNING),
            step(4, None, None, StepStatus.PENDING),
        ),
        at=T0 + timedelta(seconds=4),
    )

    assert [(bar.step, bar.duration_s) for bar in timeline.bars] == [("s1", 1), ("s3", 3)]
    assert timeline.span_s == 4 and timeline.gaps_cut == 0


def test_overlapping_steps_do_not_count_as_gaps():
    done = StepStatus.COMPLETED
    timeline = build_timeline(
        state(step(1, 0, 100, done), step(2, 10, 50, done), step(3, 60, 110, done)),
        at=T0,
    )

    assert [bar.offset_s for bar in timeline.bars] == [0, 10, 60]
    assert timeline.span_s == 110 and timeline.gaps_cut == 0
