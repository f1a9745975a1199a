"""Everything the CLI prints: progress while a run works, tables after, errors and hints.

Progress goes to stderr and results to stdout, so ``--json`` output and redirected tables stay
clean. In a terminal a spinner shows the running step and its elapsed time; elsewhere (CI, a
pipe, NO_COLOR) plain lines are printed instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from stepline.cli.tables import Column, FittedTable
from stepline.engine.events import Event, EventType
from stepline.engine.plan import Action
from stepline.spec import format_duration
from stepline.store.cache import CacheStats
from stepline.store.runs import RunSummary
from stepline.store.state import RunState, RunStatus, RunUsage, StepStatus

if TYPE_CHECKING:  # the runner pulls in jinja2; list and --help must stay light
    from stepline.engine.background import Cancellation, Detached
    from stepline.engine.contract import RunResult
    from stepline.engine.estimates import LLMEstimate
    from stepline.engine.pauses import PausePoint
    from stepline.engine.prepare import Preview
    from stepline.reports.diff import RunComparison, StepComparison
    from stepline.reports.overview import RunOverview, StepNotes, Timeline
    from stepline.store.batches import SubmittedBatch

STATUS_STYLE = {
    "completed": "green",
    "running": "cyan",
    "paused": "yellow",
    "failed": "red",
    "interrupted": "magenta",
    "pending": "dim",
    "skipped": "dim",
    "unreadable": "red",
}
PLAIN_PROGRESS_EVERY_S = 10.0

MARK = {
    EventType.STEP_COMPLETED: "[green]✓[/]",
    EventType.STEP_REUSED: "[dim]·[/]",
    EventType.STEP_SKIPPED: "[dim]-[/]",
    EventType.STEP_FAILED: "[red]✗[/]",
}


def make_consoles() -> tuple[Console, Console]:
    """(stdout, stderr) consoles; colour and animation are off without a terminal or NO_COLOR.

    Soft wrap: rich never breaks or crops a line itself. A terminal wraps a long line where it
    must, and a pipe or a CI log keeps it whole, so a path is never split in the middle; tables
    fit themselves to the width (``FittedTable``).
    """
    return (
        Console(highlight=False, soft_wrap=True),
        Console(stderr=True, highlight=False, soft_wrap=True),
    )


def is_plain(console: Console) -> bool:
    return not console.is_terminal or "NO_COLOR" in os.environ or console.is_dumb_terminal


class _Running:
    """A live line: spinner, ``[n/N] title...``, the elapsed time and, while a reply streams,
    how many tokens have arrived; redrawn by rich."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.started = time.monotonic()
        self.spinner = Spinner("dots")
        self.detail = ""
        self.bar: ProgressBar | None = None  # set for fan-out steps

    def __rich__(self) -> RenderableType:
        elapsed = format_duration(time.monotonic() - self.started)
        detail = f" · {self.detail}" if self.detail else ""
        self.spinner.update(text=Text.from_markup(f"{self.label} [dim]{elapsed}{detail}[/]"))
        if self.bar is None:
            return self.spinner
        return Group(self.spinner, self.bar)


class _RunningSteps:
    """Every running step's live line, in step order (steps may run at once)."""

    def __init__(self) -> None:
        self.lines: dict[int, _Running] = {}

    def __rich__(self) -> RenderableType:
        return Group(*(self.lines[number] for number in sorted(self.lines)))


class ProgressPrinter:
    """An event listener that shows step progress on the error console."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.plain = is_plain(console)
        self._live: Live | None = None
        self._steps = _RunningSteps()
        self._last_plain = time.monotonic()
        # A pause prompt asks from a worker thread while other steps may still run and send
        # events: the live lines step aside until it is answered (see ``aside``).
        self._lock = threading.RLock()
        self._aside = False

    @contextlib.contextmanager
    def aside(self) -> Iterator[None]:
        """Hide the live lines while a person is asked something on the same terminal; they
        come back, with whatever ran meanwhile, once the question is answered."""
        with self._lock:
            self._aside = True
            self._hide()
        try:
            yield
        finally:
            with self._lock:
                self._aside = False
                if self._steps.lines:
                    self._show()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._take(event)

    def _take(self, event: Event) -> None:
        label = f"[{event.number}/{event.total}] {escape(event.title or event.step or '')}"
        message = escape(event.message or "")
        running = self._steps.lines.get(event.number or 0)
        if event.type is EventType.LLM_PROGRESS:
            if running is not None:  # plain output skips it: one line per token is noise
                tokens = event.data.get("output_tokens", 0)
                running.detail = f"{message} streaming, ~{tokens:,} tokens"
        elif event.type is EventType.ITEM_PROGRESS:
            self._items(label, running, event.data)
        elif event.type is EventType.STEP_STARTED:
            self._start(event.number or 0, label)
        elif event.type in MARK:
            self._stop(event.number or 0)
            self.console.print(f"{MARK[event.type]} {label}{self._suffix(event)}")
            if event.data.get("hint"):
                self.console.print(f"  [dim]hint:[/] {escape(event.data['hint'])}")
        elif event.type is EventType.PAUSE_PASSED:
            self.console.print(f"  [dim]pause point passed ({message})[/]")
        elif event.type is EventType.OUTPUT_EDITED:
            self.console.print(f"  [yellow]using the edited output {message}[/]")
        elif event.type is EventType.LOG:
            self.console.print(f"  [dim]{escape(event.step or '')}: {message}[/]")
        elif event.type.value.startswith("run_"):
            self._stop_all()

    def _items(self, label: str, running: _Running | None, progress: dict[str, Any]) -> None:
        """Fan-out progress: a bar under the live line, or a plain line every few seconds."""
        text = fan_out_progress_text(progress)
        if running is not None:
            running.detail = text
            total = max(progress["total"], 1)  # a streamed step learns its total as it goes
            if running.bar is None:
                running.bar = ProgressBar(total=total, width=40)
            running.bar.update(progress["done"] + progress["failed"], total=total)
        elif self.plain and time.monotonic() - self._last_plain >= PLAIN_PROGRESS_EVERY_S:
            self._last_plain = time.monotonic()
            self.console.print(f"{label}: {text}")

    def _start(self, number: int, label: str) -> None:
        if self.plain:
            self.console.print(f"{label}...")
            return
        self._steps.lines[number] = _Running(f"{label}...")
        if not self._aside:
            self._show()

    def _show(self) -> None:
        if self._live is None:
            self._live = Live(
                self._steps, console=self.console, refresh_per_second=8, transient=True
            )
            self._live.start()

    def _hide(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _stop(self, number: int) -> None:
        """A step ended: its live line goes; the display goes with the last one."""
        self._steps.lines.pop(number, None)
        if not self._steps.lines:
            self._stop_all()

    def _stop_all(self) -> None:
        self._steps.lines.clear()
        self._hide()

    @staticmethod
    def _suffix(event: Event) -> str:
        if event.type is EventType.STEP_COMPLETED:
            return f" [dim]{format_duration(event.data.get('duration_s', 0.0))}[/]"
        if event.type is EventType.STEP_REUSED:
            return " [dim]reused[/]"
        if event.type is EventType.STEP_SKIPPED:
            return f" [dim]skipped ({escape(event.message or '')})[/]"
        return f": {escape(event.message or '')}"


def fan_out_progress_text(progress: dict[str, Any]) -> str:
    """``37/120 items, 2 failed · 12.3/s · ETA 7.0s · 4,210 tokens · $0.0123``."""
    parts = [f"{progress['done']:,}/{progress['total']:,} items"]
    if progress["failed"]:
        parts[0] += f", {progress['failed']:,} failed"
    if progress.get("filtered"):
        parts[0] += f" ({progress['filtered']:,} filtered out)"
    if progress.get("rate_per_s"):
        parts.append(f"{progress['rate_per_s']:.1f}/s")
    if progress.get("eta_s") is not None and progress["done"] < progress["total"]:
        parts.append(f"ETA {format_duration(progress['eta_s'])}")
    tokens = progress.get("input_tokens", 0) + progress.get("output_tokens", 0)
    if tokens:
        parts.append(f"{tokens:,} tokens")
        parts.append(format_cost(progress.get("cost_usd")))
    if progress.get("batch"):
        parts.append(batch_counts_text(progress["batch"]))
    return " · ".join(parts)


def batch_counts_text(batch: dict[str, int]) -> str:
    """``2 batches (1 open): 120 processing, 30 succeeded, 1 expired``."""
    counted = ("processing", "succeeded", "errored", "expired", "canceled")
    counts = [f"{batch[name]:,} {name}" for name in counted if batch.get(name)]
    plural = "es" if batch.get("batches", 0) != 1 else ""
    head = f"{batch.get('batches', 0)} batch{plural} ({batch.get('open', 0)} open)"
    return head + (": " + ", ".join(counts) if counts else "")


def ask_at_pause(
    console: Console, progress: ProgressPrinter | None = None
) -> Callable[[PausePoint], bool]:
    """A pauser that asks on the terminal: Enter continues, q stops. The live lines of the
    steps still running (``progress``) step aside while it asks."""

    def ask(point: PausePoint) -> bool:
        if progress is None:
            return _ask(point)
        with progress.aside():
            return _ask(point)

    def _ask(point: PausePoint) -> bool:
        if point.problem:
            console.print(f"[red]{escape(point.problem)}[/]")
        console.print(
            f"[yellow]Paused after [{point.number}] {escape(point.title)}.[/] "
            f"Review or edit the output:\n  {escape(str(point.output_path))}"
            + (f"\n[dim]note: {escape(point.note)}[/]" if point.note else "")
        )
        try:
            answer = console.input("Press Enter to continue, or q then Enter to stop: ")
        except EOFError:
            return False
        return answer.strip().lower() not in {"q", "quit", "stop"}

    return ask


def resume_command(run_id: str, workdir: Path, state: RunState | None = None) -> str:
    """The command that continues a run (a budget pause needs a higher --max-cost too)."""
    command = f"pipeline resume {run_id}"
    if workdir != Path(".pipeline"):
        command += f" --workdir {workdir}"
    if state is not None and state.pause_reason == "budget":
        command += " --max-cost USD"
    return command


def print_result(console: Console, result: RunResult, workdir: Path) -> None:
    """The summary table and one closing line that says what to do next."""
    from stepline.reports.overview import step_notes, usage_breakdown  # reads, never writes
    from stepline.store.rundir import RunDir

    run_dir = RunDir(result.run_dir)
    usage = usage_breakdown(run_dir.iter_calls()).by_step
    console.print(steps_table(result.state, step_notes(result.state, run_dir), usage))
    resume = resume_command(result.run_id, workdir, result.state)
    status = result.status
    where = escape(str(result.run_dir))
    if status is RunStatus.COMPLETED:
        failed = [s.id for s in result.state.steps if s.status == StepStatus.FAILED]
        note = f" ({len(failed)} non-critical step(s) failed)" if failed else ""
        note += escape(failed_items_note(result.state))
        line = f"[green]Run {result.run_id} completed{note}.[/] Outputs: {where}/steps"
    elif status is RunStatus.FAILED:  # the error too: stdout may be read without stderr
        why = f": {escape(result.message)}" if result.message else ""
        line = f"[red]Run {result.run_id} failed{why}.[/] Fix the problem, then: {resume}"
    elif status is RunStatus.PAUSED:
        line = f"[yellow]{escape(result.message or 'Paused')}.[/] Continue with: {resume}"
    else:
        line = f"[magenta]Run {result.run_id} interrupted.[/] Resume with: {resume}"
    console.print(line, soft_wrap=True)


def failed_items_note(state: RunState) -> str:
    """``; 3 of 200 items of step "label" failed``: a run can complete with items left out
    (``on_item_error: skip`` or ``collect``), and its last line should not hide it."""
    parts = [
        f"{step.metrics['items_failed']:,} of {step.metrics.get('items', 0):,} items of step "
        f'"{step.label or step.id}" failed'
        for step in state.steps
        if step.status == StepStatus.COMPLETED and step.metrics.get("items_failed")
    ]
    return "; " + ", ".join(parts) if parts else ""


def steps_table(state: RunState, notes: StepNotes, usage: dict[str, RunUsage]) -> FittedTable:
    """Each step's status, time, tokens, cost and output; at 80 columns the step id, status,
    cost and output path stay whole and the title, kind and tokens give way. ``notes`` add
    how far unfinished fan-out steps got and which completed steps are out of date.

    Tokens and cost come from ``usage`` (by step, summed from the call records: what the
    step's requests used, replays and cache hits at nothing, failed items included), the
    numbers the usage table and the run's totals show; a step without calls shows none."""
    from stepline.reports.overview import metric_notes  # loaded by show already

    titled = any(step.label and step.label != step.id for step in state.steps)
    columns = [
        Column("#", justify="right", drop=3),
        Column("step"),
        *([Column("title", wrap=True, drop=5, max_width=40)] if titled else []),
        Column("kind", drop=6),
        Column("status", wrap=True),
        Column("duration", justify="right", drop=2),
        Column("tokens in/out", justify="right", drop=4),
        Column("cost", justify="right", drop=1),
        Column("output"),
    ]
    table = FittedTable(columns, title=f"{state.pipeline} · {state.run_id}", title_justify="left")
    for step in state.steps:
        duration = format_duration(step.duration_s) if step.duration_s is not None else ""
        words = notes.status(step)
        style = STATUS_STYLE.get(words.split(" ", 1)[0], "")
        if step.id in notes.out_of_date:
            style = "yellow"
        metrics = step.metrics
        status = f"[{style}]{escape(words)}[/]"
        for note, problem in metric_notes(metrics):
            status += f" [red]({escape(note)})[/]" if problem else f" ({escape(note)})"
        tokens, cost = _step_usage(usage.get(step.id))
        table.add_row(
            str(step.number),
            escape(step.id),
            *([escape(step.label or "")] if titled else []),
            step.kind,
            status,
            duration,
            tokens,
            cost,
            escape(step.output or ""),
        )
    return table


def _step_usage(used: RunUsage | None) -> tuple[str, str]:
    """A step's tokens (in/out) and cost cells; blank for a step that made no calls."""
    if used is None:
        return "", ""
    tokens = f"{used.input_tokens:,}/{used.output_tokens:,}"
    return tokens, format_cost(used.cost_known, used.unpriced_calls)


def format_cost(cost_usd: float | None, unpriced: int = 0) -> str:
    """``$0.0123``; ``unknown`` without a price; ``$0.0123 + 2 unpriced`` when partly known."""
    if cost_usd is None:
        return "unknown"
    text = f"${cost_usd:.4f}"
    return f"{text} + {unpriced} unpriced" if unpriced else text


def print_plan(console: Console, preview: Preview) -> None:
    """The --dry-run plan: what each step would do, why, and what it waits for; which steps
    can run together and the critical path; then the LLM steps' outlook."""
    prepared = preview.prepared
    records = prepared.state.steps
    titled = any(step.label and step.label != step.id for step in prepared.state.steps)
    columns = [
        Column("#", justify="right", drop=1),
        Column("step"),
        *([Column("title", wrap=True, drop=3, max_width=40)] if titled else []),
        Column("action"),
        Column("waits for", wrap=True, drop=2, max_width=30),
        Column("why", wrap=True),
    ]
    table = FittedTable(
        columns, title=f"Plan for {prepared.state.pipeline} · {prepared.state.run_id}"
    )
    style = {Action.RUN: "cyan", Action.REUSE: "green", Action.SKIP: "dim", Action.STOP: "dim"}
    for decision, step in zip(prepared.decisions, records, strict=True):
        table.add_row(
            str(decision.number),
            escape(step.id),
            *([escape(step.label or "")] if titled else []),
            f"[{style[decision.action]}]{decision.action.value}[/]",
            escape(_waits_for_text(preview, decision.id, decision.number)),
            escape(decision.reason),
        )
    console.print(table)
    print_graph(console, preview)
    if preview.estimates:
        print_estimates(console, preview)
    for warning in preview.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    console.print("[dim]Dry run: nothing was written.[/]")


def _waits_for_text(preview: Preview, step_id: str, number: int) -> str:
    """``extract, context``; ``all before`` for a step that waits for every earlier one."""
    waits_for = preview.waits_for(step_id)
    if not waits_for:
        return "-"
    if step_id in preview.prepared.graph.waits_for_all and number > 2:
        return "all before"
    return ", ".join(waits_for)


def print_graph(console: Console, preview: Preview) -> None:
    """Which of the steps that run can run together, and the chain that takes longest."""
    together = [wave for wave in preview.waves if len(wave) > 1]
    path = preview.critical_path
    if together:
        groups = "; ".join(", ".join(wave) for wave in together)
        console.print(
            f"Can run together: {escape(groups)} "
            f"[dim](at most {preview.max_parallel_steps} steps at once)[/]"
        )
    if len(path) > 1:
        console.print(
            f"Critical path: {escape(' → '.join(path))} "
            f"[dim]({len(path)} of the {len(preview.running)} steps that run)[/]"
        )


def print_estimates(console: Console, preview: Preview) -> None:
    """The LLM steps' tokens and cost bounds, the total as configured, the budget, notes."""
    from stepline.engine.estimates import planned_cost  # loaded by the preview

    estimates = preview.estimates
    live_only = _cost_modes(estimates) == ["live"]
    console.print(estimates_table(estimates))
    if not live_only:
        console.print(costs_table(estimates))
    methods = sorted({e.method for e in estimates if e.method})
    if methods:
        bound = "; the cost prices that input and a full max_tokens reply" if live_only else ""
        console.print(f"[dim]Input tokens: {escape(', '.join(methods))}{bound}.[/]")
    if any(mode.endswith("cache_prompt") for e in estimates for mode in e.costs):
        console.print(
            "[dim]cache_prompt: the first request writes the shared prefix to the prompt cache "
            "and the others read it (in a batch, reads are best-effort).[/]"
        )
    planned, unknown = planned_cost(estimates)
    label = "Total" if live_only else "Total as configured (▸)"
    console.print(f"{label}: ≤ {format_cost(planned)}{_unknown_steps(unknown)}")
    outlook = preview.budget
    if outlook is not None:
        console.print(f"[{'green' if outlook.fits else 'yellow'}]{escape(outlook.summary)}[/]")
    for estimate in estimates:
        if estimate.note:
            console.print(f"  [dim]{escape(estimate.step)}: {escape(estimate.note)}[/]")


def _unknown_steps(unknown: int) -> str:
    return f" + {unknown} {'steps' if unknown > 1 else 'step'} of unknown cost" if unknown else ""


def estimates_table(estimates: list[LLMEstimate]) -> FittedTable:
    """Each LLM step's model, cache status, items and tokens; its cost bound too when every
    step can only go live (else the costs are in ``costs_table``)."""
    live_only = _cost_modes(estimates) == ["live"]
    columns = [
        Column("step"),
        Column("model"),
        Column("cache", wrap=True, drop=1),
        Column("items", justify="right", drop=3),
        Column("input", justify="right", drop=2),
        Column("max out", justify="right", drop=4),
        *([Column("cost ≤", justify="right")] if live_only else []),
    ]
    table = FittedTable(columns, title="LLM steps")
    for estimate in estimates:
        tokens = "?" if estimate.input_tokens is None else f"{estimate.input_tokens:,}"
        if estimate.approximate and estimate.input_tokens is not None:
            tokens = "~" + tokens
        cache_style = "green" if estimate.cache in ("hit", "replay (recorded)") else "yellow"
        cost = [_mode_cost(estimate, "live", mark=False)] if live_only else []
        table.add_row(
            escape(estimate.step),
            escape(estimate.model),
            f"[{cache_style}]{escape(estimate.cache)}[/]",
            _items_cell(estimate),
            tokens,
            f"{estimate.max_output_tokens:,}",
            *cost,
        )
    return table


def _items_cell(estimate: LLMEstimate) -> str:
    """A fan-out step's items: ``200``, or ``116 of 200`` when the checkpoints hold the rest."""
    if estimate.items is None:
        return ""
    if estimate.items_done:
        return f"{estimate.items - estimate.items_done:,} of {estimate.items:,}"
    return f"{estimate.items:,}"


def _cost_modes(estimates: list[LLMEstimate]) -> list[str]:
    """The modes some step can use, in ``MODES`` order ("live" at least)."""
    from stepline.engine.estimates import MODES  # loaded by the preview

    return [mode for mode in MODES if any(mode in e.costs for e in estimates)] or ["live"]


def costs_table(estimates: list[LLMEstimate]) -> FittedTable:
    """Each LLM step's cost bound in every mode some step can use, side by side, ▸ on the mode
    it is set to use; with several steps, a total per mode (where a mode does not apply to a
    step, that step counts live)."""
    from stepline.engine.estimates import planned_cost  # loaded by the preview

    modes = _cost_modes(estimates)
    caption = "▸ as configured (mode:, cache_prompt:, --batch)"
    if any(mode not in e.costs for e in estimates for mode in modes):
        caption += " · - does not apply"
    if len(estimates) > 1:
        caption += "\ntotal: every step in that mode where it can be, else live"
    columns = [Column("step"), *(Column(mode, justify="right") for mode in modes)]
    table = FittedTable(
        columns,
        title="Cost ≤ (every reply max_tokens long)",
        caption=caption,
        caption_justify="left",
    )
    for estimate in estimates:
        table.add_row(escape(estimate.step), *(_mode_cost(estimate, mode) for mode in modes))
    if len(estimates) > 1:
        table.add_section()
        totals = [planned_cost(estimates, mode) for mode in modes]
        table.add_row("total", *(f"{format_cost(cost)}{' +?' * bool(n)}" for cost, n in totals))
    return table


def _mode_cost(estimate: LLMEstimate, mode: str, *, mark: bool = True) -> str:
    """A cost cell: ``$0.0123``, ``?`` (not estimated), ``unpriced`` or ``-`` (the mode does not
    apply); ``▸`` marks the mode the step is set to use."""
    if mode not in estimate.costs:
        return "[dim]-[/]"
    cost = estimate.costs[mode]
    if cost is not None:
        text = format_cost(cost)
    else:
        text = "?" if estimate.input_tokens is None else "unpriced"
    return f"[bold]▸ {text}[/]" if mark and mode == estimate.mode else text


def runs_table(rows: list[RunSummary]) -> FittedTable:
    """``pipeline list``: the run id (what a user copies) is never cut; at 80 columns the
    duration and the steps' progress give way first."""
    columns = [
        Column("run id"),
        Column("pipeline", wrap=True),
        Column("status"),
        Column("started", drop=2),
        Column("duration", justify="right", drop=4),
        Column("steps", wrap=True, drop=3),
        Column("cost", justify="right", drop=1),
    ]
    table = FittedTable(columns)
    for row in rows:
        started = f"{row.started_at:%Y-%m-%d %H:%M}" if row.started_at else ""
        duration = format_duration(row.duration_s) if row.duration_s is not None else ""
        status = f"[{STATUS_STYLE.get(row.status, '')}]{row.status}[/]"
        steps = f"{row.steps_done}/{row.steps_total}" if row.problem is None else ""
        if row.current_step:
            steps += f" · {escape(row.current_step)}"
        if row.items_total is not None:
            steps += f" {row.items_done or 0:,}/{row.items_total:,} items"
        cost = format_cost(row.cost_usd, row.unpriced_calls) if row.requests else ""
        table.add_row(row.run_id, escape(row.pipeline), status, started, duration, steps, cost)
    return table


def print_run(console: Console, overview: RunOverview, workdir: Path) -> None:
    """``pipeline show``: the run's header, its steps, a timeline, the LLM usage per step and
    per model, and what to do next."""
    state, status = overview.state, overview.status
    console.print(f"[bold]{state.run_id}[/]  {escape(state.pipeline)}  ", end="")
    console.print(f"[{STATUS_STYLE.get(status.value, '')}]{status.value}[/]")
    console.print(f"  started   {state.started_at:%Y-%m-%d %H:%M:%S} UTC")
    console.print(f"  duration  {format_duration(overview.duration_s)}")
    console.print(f"  config    {escape(state.config_path or '(snapshot only)')}")
    console.print(f"  input     {escape(state.input_path)}")
    usage = state.usage
    if usage.requests:
        console.print(
            f"  LLM       {usage.requests} request(s), {usage.input_tokens} tokens in, "
            f"{usage.output_tokens} out, cost {format_cost(usage.cost_known, usage.unpriced_calls)}"
        )
    console.print(steps_table(state, overview.notes, overview.usage.by_step))
    if overview.timeline.bars:
        width = max(10, min(TIMELINE_WIDTH, console.width - 50))  # the bars give way at 80
        console.print(timeline_table(overview.timeline, width))
    for name, table in (("step", overview.usage.by_step), ("model", overview.usage.by_model)):
        if table:
            console.print(usage_table(f"LLM usage by {name}", table))
    if overview.batches:
        console.print(batches_table(overview.batches))
    for step in state.steps:
        if step.error:
            console.print(f"[red]{escape(step.id)}:[/] {escape(step.error)}")
    if status in (RunStatus.PAUSED, RunStatus.INTERRUPTED, RunStatus.FAILED):
        console.print(f"Continue with: {resume_command(state.run_id, workdir, state)}")


def batches_table(batches: list[SubmittedBatch]) -> Table:
    """Batch mode's submissions: each provider batch, where it stands and its counts."""
    table = Table(title="Batches", title_justify="left", show_edge=False, box=None)
    for column in ("step", "batch", "status", "requests"):
        table.add_column(column, justify="right" if column == "requests" else "left")
    table.add_column("results")
    for batch in batches:
        counts = ", ".join(
            f"{batch.counts[name]:,} {name}"
            for name in ("processing", "succeeded", "errored", "expired", "canceled")
            if batch.counts.get(name)
        )
        table.add_row(
            escape(batch.step),
            escape(batch.batch_id or "(not created)"),
            escape(batch.status),
            f"{batch.requests:,}",
            counts,
        )
    return table


TIMELINE_WIDTH = 40


def timeline_table(timeline: Timeline, width: int = TIMELINE_WIDTH) -> Table:
    """Each step's latest attempt as a bar placed on the run's time axis."""
    title = "Timeline"
    if timeline.gaps_cut:
        title += f" ({timeline.gaps_cut} idle gap(s) shortened)"
    table = Table(title=title, title_justify="left", show_edge=False, box=None)
    table.add_column("#", justify="right")
    table.add_column("step", max_width=30, no_wrap=True, overflow="ellipsis")
    table.add_column("", no_wrap=True, width=width)
    table.add_column("duration", justify="right", no_wrap=True)
    span = timeline.span_s or 1.0
    for bar in timeline.bars:
        start = min(width - 1, int(bar.offset_s / span * width))
        end = max(start + 1, min(width, round((bar.offset_s + bar.duration_s) / span * width)))
        line = Text(" " * start)
        line.append("█" * (end - start), style=STATUS_STYLE.get(bar.status, ""))
        table.add_row(str(bar.number), escape(bar.title), line, format_duration(bar.duration_s))
    return table


def usage_table(title: str, usage: dict[str, RunUsage]) -> FittedTable:
    """LLM requests, tokens and cost, a row per step or per model."""
    columns = [
        Column("name"),
        Column("requests", justify="right"),
        Column("cached", justify="right", drop=2),
        Column("replayed", justify="right", drop=3),
        Column("tokens in", justify="right", drop=1),
        Column("tokens out", justify="right", drop=1),
        Column("cost", justify="right"),
    ]
    table = FittedTable(columns, title=title, title_justify="left")
    for name, row in usage.items():
        table.add_row(
            escape(name),
            f"{row.requests:,}",
            f"{row.cache_hits:,}",
            f"{row.replayed:,}",
            f"{row.input_tokens:,}",
            f"{row.output_tokens:,}",
            format_cost(row.cost_known, row.unpriced_calls),
        )
    return table


def comparison_table(comparison: RunComparison) -> FittedTable:
    """``pipeline diff A B``: each step's output, same or not. The run ids are in the title,
    whole, and the columns are headed A and B; one path column when both runs use the same."""
    styles = {"same": "green", "changed": "yellow", "only_a": "cyan", "only_b": "cyan"}
    words = {"only_a": "only in A", "only_b": "only in B"}
    one_path = all(
        None in (step.output_a, step.output_b) or step.output_a == step.output_b
        for step in comparison.steps
    )
    paths = [Column("output file")] if one_path else [Column("output in A"), Column("output in B")]
    table = FittedTable(
        [Column("step"), Column("change"), *paths],
        title=f"A {comparison.run_a} → B {comparison.run_b}",
        title_justify="left",
    )
    for step in comparison.steps:
        change = step.change.value
        word = words.get(change, change.replace("_", " "))
        files = (
            [step.output_a or step.output_b or "-"]
            if one_path
            else [
                step.output_a or "-",
                step.output_b or "-",
            ]
        )
        table.add_row(
            escape(step.step),
            f"[{styles.get(change, 'dim')}]{escape(word)}[/]",
            *(escape(path) for path in files),
        )
    return table


def print_step_diff(console: Console, compared: StepComparison, text: str) -> None:
    """A unified diff, coloured in a terminal; a one-line verdict when there is none."""
    if not text:
        verdict = "the same" if compared.change.value == "same" else "missing in both runs"
        console.print(f'Step "{escape(compared.step)}": the output is {verdict}.')
        return
    styles = {"+": "green", "-": "red", "@": "cyan"}
    for line in text.splitlines():
        style = "bold" if line.startswith(("+++", "---")) else styles.get(line[:1], "")
        console.print(Text(line, style=style), soft_wrap=True, highlight=False)


def print_output(console: Console, value: Any) -> None:
    """A step's output: text as is, JSON Lines a line at a time, anything else as JSON."""
    if isinstance(value, str):
        console.print(value, markup=False, highlight=False, soft_wrap=True)
    elif isinstance(value, Sequence) and not isinstance(value, list | tuple):
        for row in value:  # a .jsonl output: streamed, never loaded whole
            console.print(json.dumps(row, ensure_ascii=False), markup=False, soft_wrap=True)
    else:
        console.print_json(json.dumps(value, ensure_ascii=False))


def print_error(console: Console, message: str, hint: str | None) -> None:
    console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
    if hint:
        console.print(f"[dim]hint:[/] {escape(hint)}", soft_wrap=True)


def calls_table(calls: list[tuple[int, dict[str, Any]]]) -> FittedTable:
    """``pipeline show RUN --calls``: one row per request attempt."""
    columns = [
        Column("#", justify="right"),
        Column("step"),
        Column("item", drop=3),
        Column("attempt", justify="right", drop=4),
        Column("model", wrap=True),
        Column("outcome"),
        Column("tokens in/out", justify="right", drop=2),
        Column("cost", justify="right", drop=1),
        Column("latency", justify="right", drop=5),
    ]
    table = FittedTable(columns)
    for number, call in calls:
        ok = call.get("outcome") == "ok"
        model = call.get("model") or call.get("model_requested") or ""
        if call.get("model_requested") not in (None, model):
            model += f" (asked {call['model_requested']})"
        tokens = f"{call.get('input_tokens')}/{call.get('output_tokens')}" if ok else ""
        outcome = (
            "[green]ok[/]" if ok else f"[red]{escape(str(call.get('status_code') or 'error'))}[/]"
        )
        cost = call.get("cost_usd")
        table.add_row(
            str(number),
            escape(str(call.get("step", ""))),
            escape(str(call.get("item_key") or "")),
            str(call.get("attempt", "")),
            escape(model),
            outcome,
            tokens,
            format_cost(cost) if ok else "",
            format_duration(float(call.get("latency_s") or 0.0)),
        )
    return table


def print_call(console: Console, number: int, call: dict[str, Any]) -> None:
    """``pipeline show RUN --call N``: the request and the reply, in full."""
    console.print(
        f"[bold]call {number}[/]  step {escape(str(call.get('step')))}  "
        f"attempt {call.get('attempt')}  {escape(str(call.get('provider')))}"
    )
    for key in (
        "model_requested",
        "model",
        "request_hash",
        "stop_reason",
        "input_tokens",
        "output_tokens",
        "latency_s",
        "status_code",
        "error",
    ):
        if call.get(key) is not None:
            console.print(f"  {key:16s}{escape(str(call[key]))}")
    sections = [("system", call.get("system")), ("prompt", call.get("prompt"))]
    sections += [
        (f"{turn['role']} (repair turn)", turn["content"]) for turn in call.get("followups") or []
    ]
    sections.append(("response", call.get("response")))
    for title, text in sections:
        if text is not None:
            console.print(f"[bold]{escape(title)}[/]")
            console.print(str(text), markup=False, highlight=False, soft_wrap=True)


def cache_stats(path: Path, stats: CacheStats) -> str:
    """``pipeline cache stats``: one short paragraph."""
    if not stats.entries:
        return f"{path}: empty"
    oldest = datetime.fromtimestamp(stats.oldest or 0, UTC)
    newest = datetime.fromtimestamp(stats.newest or 0, UTC)
    return (
        f"{escape(str(path))}: {stats.entries} cached repl"
        f"{'y' if stats.entries == 1 else 'ies'}, {stats.bytes / 1024:.0f} KiB\n"
        f"  oldest {oldest:%Y-%m-%d %H:%M} UTC, newest {newest:%Y-%m-%d %H:%M} UTC"
    )


def print_detached(console: Console, detached: Detached, workdir: Path) -> None:
    """After ``--detach``: where the run is and what to do with it (on stderr)."""
    flag = "" if workdir == Path(".pipeline") else f" --workdir {workdir}"
    console.print(
        f"Started run {detached.run_id} in the background (process {detached.pid}).\n"
        f"  follow:  pipeline logs {detached.run_id} -f{escape(flag)}\n"
        f"  stop:    pipeline cancel {detached.run_id}{escape(flag)}\n"
        f"  output:  {escape(str(detached.log_path))}",
        soft_wrap=True,
    )


def print_cancellation(console: Console, result: Cancellation, workdir: Path) -> None:
    """``pipeline cancel``: what was stopped and how the run stands now."""
    status = result.status.value
    styled = f"[{STATUS_STYLE.get(status, '')}]{status}[/]"
    for batch_id in result.batches:
        console.print(f"Canceled batch {escape(batch_id)}.", soft_wrap=True)
    if not result.was_running:
        nothing = "" if result.batches else "; nothing to cancel"
        console.print(f"Run {result.run_id} is not running ({styled}){nothing}.")
        return
    console.print(
        f"Stopped run {result.run_id} ({result.signal} to process {result.pid}); "
        f"it is now {styled}.",
        soft_wrap=True,
    )
    if result.status in (RunStatus.INTERRUPTED, RunStatus.FAILED, RunStatus.PAUSED):
        console.print(f"Resume with: {resume_command(result.run_id, workdir)}", soft_wrap=True)


def event_line(event: dict[str, Any]) -> str:
    """One event of ``events.jsonl`` as a line for ``pipeline logs`` (rich markup)."""
    moment = str(event.get("time", ""))[11:19]  # HH:MM:SS of the ISO time (UTC)
    kind = str(event.get("type", ""))
    message = escape(str(event.get("message") or ""))
    data = event.get("data") or {}
    if kind.startswith("run_"):
        text = f"[bold]run {kind.removeprefix('run_')}[/]" + (f": {message}" if message else "")
        if data.get("plan"):
            text += f" [dim](plan: {escape(', '.join(map(str, data['plan'])))})[/]"
    else:
        text = _step_event_text(kind, event, message, data)
    if data.get("hint"):
        text += f"\n    [dim]hint:[/] {escape(str(data['hint']))}"
    return f"[dim]{moment}[/] {text}"


def _step_event_text(kind: str, event: dict[str, Any], message: str, data: dict[str, Any]) -> str:
    title = escape(str(event.get("title") or event.get("step") or ""))
    label = f"[{event.get('number')}/{event.get('total')}] {title}"
    if kind == "step_started":
        return f"  {label}..." + (f" [dim]({message})[/]" if message else "")
    if kind == "item_progress":
        return f"  {label}: {fan_out_progress_text(data)}"
    if kind == "log":
        return f"  [dim]{escape(str(event.get('step') or ''))}: {message}[/]"
    if kind == "pause_passed":
        return f"  [dim]pause point passed ({message})[/]"
    if kind == "output_edited":
        return f"  [yellow]using the edited output {message}[/]"
    if kind == "step_completed":
        return f"{MARK[EventType.STEP_COMPLETED]} {label} [dim]{_duration(data)}[/]"
    if kind == "step_reused":
        return f"{MARK[EventType.STEP_REUSED]} {label} [dim]reused[/]"
    if kind == "step_skipped":
        return f"{MARK[EventType.STEP_SKIPPED]} {label} [dim]skipped ({message})[/]"
    if kind == "step_failed":
        return f"{MARK[EventType.STEP_FAILED]} {label}: {message}"
    return f"  {escape(kind)} {label}" + (f": {message}" if message else "")  # a newer type


def _duration(data: dict[str, Any]) -> str:
    return format_duration(float(data.get("duration_s") or 0.0))


def print_event(console: Console, event: dict[str, Any]) -> None:
    console.print(event_line(event), soft_wrap=True, highlight=False)


def print_log_tail(console: Console, lines: list[str]) -> None:
    """The end of ``detached.log``, for a run whose process ended without saying how."""
    if not lines:
        return
    console.print("[dim]The run's process ended without recording how; its detached.log ends:[/]")
    for line in lines:
        console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
