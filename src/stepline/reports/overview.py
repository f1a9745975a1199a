"""What ``show`` and ``report`` say about a run beyond ``state.json``: a timeline of its steps,
its LLM usage broken down per step and per model, and its provider batches (batch mode).

The breakdown is summed from ``llm-calls.jsonl`` with the same rule as ``state.usage``
(``RunUsage.add_call``), so the rows always add up to the run's totals: every attempt, repair
turn, re-run and resume counts. The step table's own figures are the latest attempt's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stepline.store.batches import SubmittedBatch, read_batches
from stepline.store.rundir import RunDir
from stepline.store.runs import effective_status, run_duration
from stepline.store.state import (
    RunState,
    RunStatus,
    RunUsage,
    StepState,
    StepStatus,
    load_state,
    now,
)

MIN_GAP_S = 1.0
"""Idle time between steps longer than this (or than a tenth of the busy time, if more) is
cut down to it on the timeline: a run paused for a day would otherwise squash every bar."""


@dataclass(frozen=True)
class TimelineBar:
    """One step's latest attempt on the timeline; ``offset_s`` is on the shortened axis."""

    number: int
    step: str
    title: str
    status: str
    offset_s: float
    duration_s: float


@dataclass(frozen=True)
class Timeline:
    """The bars in start order, the axis length, and how many idle gaps were shortened."""

    bars: list[TimelineBar]
    span_s: float
    gaps_cut: int = 0


@dataclass(frozen=True)
class UsageBreakdown:
    """LLM usage per step and per model (the model that answered, else the one asked)."""

    by_step: dict[str, RunUsage] = field(default_factory=dict)
    by_model: dict[str, RunUsage] = field(default_factory=dict)
    total: RunUsage = field(default_factory=RunUsage)


@dataclass(frozen=True)
class RunOverview:
    """A run as ``show`` and ``report`` present it."""

    run_dir: RunDir
    state: RunState
    status: RunStatus
    timeline: Timeline
    usage: UsageBreakdown
    batches: list[SubmittedBatch] = field(default_factory=list)  # batch mode's submissions
    duration_s: float = 0.0  # to the run's end, or to its last write if its process died


def load_overview(run_dir: RunDir) -> RunOverview:
    """Read the state and the call log of one run (nothing is written)."""
    state = load_state(run_dir.state_path)
    usage = usage_breakdown(run_dir.iter_calls())
    # One source for every view: the call log, which a killed runner's state.json lags.
    state.usage = usage.total
    return RunOverview(
        run_dir=run_dir,
        state=state,
        status=effective_status(state, run_dir),
        timeline=build_timeline(state, at=now()),
        usage=usage,
        batches=read_batches(run_dir.items_path),
        duration_s=run_duration(state, run_dir),
    )


def build_timeline(state: RunState, *, at: datetime) -> Timeline:
    """Place each step that has started; a step still running ends ``at`` (now)."""
    spans = sorted(
        (start, end, step)
        for step in state.steps
        if (start := step.started_at) is not None and (end := _end(step, start, at)) is not None
    )
    if not spans:
        return Timeline(bars=[], span_s=0.0)
    busy = sum((end - start).total_seconds() for start, end, _ in spans)
    cap = max(MIN_GAP_S, busy / 10)
    origin, frontier, shift, cuts = spans[0][0], spans[0][0], 0.0, 0
    bars = []
    for start, end, step in spans:
        gap = (start - frontier).total_seconds()
        if gap > cap:
            shift, cuts = shift + gap - cap, cuts + 1
        bars.append(
            TimelineBar(
                number=step.number,
                step=step.id,
                title=step.label or step.id,
                status=step.status.value,
                offset_s=(start - origin).total_seconds() - shift,
                duration_s=(end - start).total_seconds(),
            )
        )
        frontier = max(frontier, end)
    return Timeline(bars=bars, span_s=(frontier - origin).total_seconds() - shift, gaps_cut=cuts)


def _end(step: StepState, start: datetime, at: datetime) -> datetime | None:
    if step.finished_at is not None:
        return max(start, step.finished_at)
    if step.status == StepStatus.RUNNING:
        return max(start, at)
    return None  # started but never finished (a dead process): no honest length to draw


def usage_breakdown(calls: Iterator[dict[str, Any]]) -> UsageBreakdown:
    """Sum call records per step and per model, counting each as ``state.usage`` does."""
    breakdown = UsageBreakdown()
    for call in calls:
        model = str(call.get("model") or call.get("model_requested") or "?")
        step = str(call.get("step") or "?")
        breakdown.by_step.setdefault(step, RunUsage()).add_call(call)
        breakdown.by_model.setdefault(model, RunUsage()).add_call(call)
        breakdown.total.add_call(call)
    return breakdown


def overview_json(overview: RunOverview) -> dict[str, Any]:
    """The fields ``show --json`` adds to the state (new keys only: nothing is renamed)."""
    timeline = overview.timeline
    return {
        "timeline": {
            "span_s": round(timeline.span_s, 3),
            "gaps_cut": timeline.gaps_cut,
            "bars": [
                {
                    "step": bar.step,
                    "number": bar.number,
                    "status": bar.status,
                    "offset_s": round(bar.offset_s, 3),
                    "duration_s": round(bar.duration_s, 3),
                }
                for bar in timeline.bars
            ],
        },
        "usage_by_step": _usage_json(overview.usage.by_step),
        "usage_by_model": _usage_json(overview.usage.by_model),
        "batches": [
            {
                "step": batch.step,
                "batch_id": batch.batch_id,
                "status": batch.status,
                "requests": batch.requests,
                "counts": batch.counts,
            }
            for batch in overview.batches
        ],
    }


def _usage_json(table: dict[str, RunUsage]) -> dict[str, Any]:
    return {
        key: {**usage.model_dump(), "cost_usd": usage.cost_known} for key, usage in table.items()
    }
