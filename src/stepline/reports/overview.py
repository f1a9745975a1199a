"""What ``show`` and ``report`` say about a run beyond ``state.json``: a timeline of its steps,
its LLM usage broken down per step and per model, its provider batches (batch mode), how far
each unfinished fan-out step's items got, and which completed steps are out of date.

The breakdown is summed from ``llm-calls.jsonl`` with the same rule as ``state.usage``
(``RunUsage.add_call``), so the rows always add up to the run's totals: every attempt, repair
turn, re-run and resume counts. The step table's own figures are the latest attempt's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stepline.spec.durations import format_duration
from stepline.store.batches import SubmittedBatch, read_batches
from stepline.store.items import ItemCounts, read_item_progress
from stepline.store.rundir import RunDir
from stepline.store.runs import effective_status, run_duration
from stepline.store.state import (
    INPUT_KEY,
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
class StepNotes:
    """What the steps table says beyond each step's recorded status."""

    items: dict[str, ItemCounts] = field(default_factory=dict)  # unfinished fan-out steps
    out_of_date: dict[str, OutOfDate] = field(default_factory=dict)  # completed steps
    stopped: frozenset[str] = frozenset()  # recorded running, but no process runs them

    def status(self, step: StepState) -> str:
        """The status cell's words: ``pending (84 of 200 items done)``, ``completed (out of
        date: extract changed)``. A running step of a run whose process died reads
        ``pending``, as Ctrl-C leaves it, so a kill and a Ctrl-C read the same."""
        status = "pending" if step.id in self.stopped else step.status.value
        if step.id in self.items:
            status += f" ({self.items[step.id].summary})"
        if step.id in self.out_of_date:
            status += f" (out of date: {self.out_of_date[step.id].summary})"
        if step.status.value == "skipped" and step.when is False:
            status += " (when gave false)"
        return status


def metric_notes(metrics: dict[str, Any]) -> list[tuple[str, bool]]:
    """What a step's metrics add to its status, each with whether it is a problem:
    ``("2 of 10 items failed", True)``, ``("28 filtered out", False)``, ``("3 attempts",
    False)``; the same words in ``show`` and the report."""
    notes: list[tuple[str, bool]] = []
    if metrics.get("items_failed"):
        notes.append((f"{metrics['items_failed']} of {metrics.get('items')} items failed", True))
    if metrics.get("items_filtered"):
        notes.append((f"{metrics['items_filtered']:,} filtered out", False))
    if metrics.get("attempts", 1) > 1 and "items" not in metrics:  # a fan-out's sum its calls'
        notes.append((f"{metrics['attempts']} attempts", False))
    if metrics.get("item_retries"):
        notes.append((f"{metrics['item_retries']} item retries", False))
    if metrics.get("executor") in ("processes", "ray", "dask"):
        notes.append((_placed(metrics), False))
    return notes


def _placed(metrics: dict[str, Any]) -> str:
    """``processes: 8 workers, 41ms per item`` (threads, the default, goes unsaid)."""
    workers = metrics.get("workers")
    text = str(metrics["executor"])
    if workers:
        text += f": {workers} worker{'s' if workers != 1 else ''}"
    ran = metrics.get("items_done", 0) + metrics.get("items_failed", 0)
    if metrics.get("item_seconds") and ran:
        each = metrics["item_seconds"] / ran
        text += f", {f'{each * 1000:.0f}ms' if each < 1 else format_duration(each)} per item"
    return text


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
    notes: StepNotes = field(default_factory=StepNotes)


def load_overview(run_dir: RunDir) -> RunOverview:
    """Read the state and the call log of one run (nothing is written)."""
    state = load_state(run_dir.state_path)
    usage = usage_breakdown(run_dir.iter_calls())
    # One source for every view: the call log, which a killed runner's state.json lags.
    state.usage = usage.total
    status = effective_status(state, run_dir)
    return RunOverview(
        run_dir=run_dir,
        state=state,
        status=status,
        timeline=build_timeline(state, at=now()),
        usage=usage,
        batches=read_batches(run_dir.items_path),
        duration_s=run_duration(state, run_dir),
        notes=step_notes(state, run_dir, running=status == RunStatus.RUNNING),
    )


def step_notes(state: RunState, run_dir: RunDir, *, running: bool = False) -> StepNotes:
    """The notes on a run's steps, from its files: item checkpoints for the steps that did
    not complete, out-of-date steps from ``state.json`` alone. ``running``: a process holds
    the run, so its running step really runs."""
    unfinished = [
        step.id
        for step in state.steps
        if step.status in (StepStatus.PENDING, StepStatus.RUNNING, StepStatus.FAILED)
    ]
    stopped = () if running else (s.id for s in state.steps if s.status == StepStatus.RUNNING)
    return StepNotes(
        items=read_item_progress(run_dir.items_path, run_dir.events_path, unfinished),
        out_of_date=out_of_date(state),
        stopped=frozenset(stopped),
    )


@dataclass(frozen=True)
class OutOfDate:
    """Why a completed step is out of date: ``upstream``, which it read, is no longer what
    it read, because ``changed`` changed (``upstream`` itself, or a step before it)."""

    upstream: str
    changed: str

    @property
    def summary(self) -> str:
        """``a changed``, or ``a changed, via b`` when b is out of date because of a."""
        via = f", via {self.upstream}" if self.upstream != self.changed else ""
        return f"{self.changed} changed{via}"


def out_of_date(state: RunState) -> dict[str, OutOfDate]:
    """Completed steps whose output was made from an upstream output that is no longer the
    upstream step's current one (it re-ran and failed, changed, or is out of date itself):
    what a resume's plan re-runs them for, derived from ``state.json`` alone (each step's
    ``reads`` against the ``output_hash`` and status of the steps it read)."""
    records = {step.id: step for step in state.steps}
    stale: dict[str, OutOfDate] = {}
    for step in state.steps:  # in order: a step reads only earlier ones
        if step.status != StepStatus.COMPLETED:
            continue
        for name, read_hash in sorted(step.reads.items()):
            upstream = records.get(name)
            if name in stale:
                stale[step.id] = OutOfDate(name, stale[name].changed)
            elif name != INPUT_KEY and (
                upstream is None
                or upstream.status != StepStatus.COMPLETED
                or upstream.output_hash != read_hash
            ):
                stale[step.id] = OutOfDate(name, name)
            else:
                continue
            break
    return stale


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
    notes = overview.notes
    return {
        "items_progress": {
            step: {
                "done": each.done,
                "failed": each.failed,
                "in_flight": each.started,
                "total": each.total,
            }
            for step, each in notes.items.items()
        },
        "out_of_date": {
            step: {"upstream": why.upstream, "changed": why.changed}
            for step, why in notes.out_of_date.items()
        },
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
