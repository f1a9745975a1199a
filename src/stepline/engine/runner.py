"""The loop: follow the plan step by step, persisting state after every transition.

Steps return values; only this module writes ``state.json`` and outputs (through ``RunDir``).
Every exit path (completed, failed, paused, interrupted) leaves a saved state that
``pipeline resume`` can continue from.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import traceback
from collections.abc import Coroutine, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from stepline import clock
from stepline.context import step_logger
from stepline.engine import conditions
from stepline.engine.contract import Hooks, PreparedRun, RunResult
from stepline.engine.edits import check_edit
from stepline.engine.events import Event, EventLog, EventType
from stepline.engine.fanout import (
    FanOut,
    FanOutProgress,
    item_base_fingerprint,
)
from stepline.engine.fingerprint import fingerprint
from stepline.engine.pauses import PauseMode, PausePoint
from stepline.engine.plan import Action, Decision
from stepline.engine.retries import attempts_of
from stepline.engine.schedule import Schedule, Unit, units_of
from stepline.engine.streams import ItemStream
from stepline.errors import (
    BudgetReached,
    RunInterrupted,
    RunStoreError,
    StepFailed,
    StepLineError,
)
from stepline.processes import ProcessGroups
from stepline.providers.base import StreamProgress
from stepline.providers.budget import CostBudget
from stepline.providers.caller import LLMCaller
from stepline.providers.pool import ProviderPool
from stepline.providers.pricing import Pricer
from stepline.providers.ratelimit import RateLimiter
from stepline.providers.records import CallRecord
from stepline.settings import Settings
from stepline.spec import StepBase
from stepline.steps import StepEnvironment, StepOutcome
from stepline.store.cassette import Cassette
from stepline.store.items import ItemStore
from stepline.store.journal import StateJournal
from stepline.store.jsonl import RowStream, hash_output
from stepline.store.runs import RunStore
from stepline.store.state import INPUT_KEY, RunStatus, StepState, StepStatus, now
from stepline.threads import run_in_thread
from stepline.workers.placement import Executors

PROGRESS_EVERY_S = 0.2


class Runner:
    """Executes one prepared run."""

    def __init__(self, prepared: PreparedRun, settings: Settings, hooks: Hooks) -> None:
        self.run = prepared
        self.hooks = hooks
        self.debug = settings.debug
        self._unsaved = False  # the state in memory is ahead of what is saved
        self._asking = False  # a pause point waits for its answer (steps may still run)
        self.journal = StateJournal(prepared.run_dir.state_path)
        self.events = EventLog(prepared.run_dir, hooks.listener)
        # What the run made so far, from the call log: a killed runner saved less than it made.
        prepared.state.usage = prepared.run_dir.calls_usage()
        self.providers = ProviderPool(settings, hooks.provider_factory)
        self.cache = RunStore(settings.workdir).cache()
        self.llm = LLMCaller(
            self.providers,
            record=self._record_call,
            pricer=Pricer(prepared.spec.pricing),
            cache=None if prepared.replay else self.cache,  # replayed replies are not real
            refresh_cache=prepared.refresh_cache,
            replay=Cassette(prepared.replay) if prepared.replay else None,
            recorder=Cassette(prepared.record) if prepared.record else None,
            cassettes=self._cassette,
            show_progress=self._show_progress,
            pipeline=prepared.spec.name,
            rate_limit=RateLimiter(prepared.spec.rate_limit) if prepared.spec.rate_limit else None,
            budget=None
            if prepared.budget_usd is None
            else CostBudget(prepared.budget_usd, prepared.state.usage.cost_usd),
        )
        self._cassettes: dict[Path, Cassette] = {}
        self.items = ItemStore(prepared.run_dir.items_path)
        self.processes = ProcessGroups(prepared.run_dir.processes_dir)
        self.executors = Executors(prepared.spec, override=prepared.executor, groups=self.processes)
        self._streams: dict[str, ItemStream] = {}  # stream_items: step id -> its stream
        self._last_progress: dict[str, float] = {}  # progress stream -> last shown
        self.outputs: dict[str, Any] = {}
        self.output_hashes: dict[str, str] = {}
        self.total = len(prepared.spec.steps)
        self._index = {step_id: index for index, step_id in enumerate(prepared.spec.step_ids)}
        self._running: dict[int, str] = {}  # the running steps' ids, by number

    def _cassette(self, name: str) -> Cassette:
        """The cassette a ``provider: replay`` step names, relative to the config's folder."""
        path = (self.run.spec.base_dir / name).resolve()
        if path not in self._cassettes:
            self._cassettes[path] = Cassette(path)
        return self._cassettes[path]

    def _show_progress(self, step_id: str, progress: StreamProgress) -> None:
        """Tell the listener how a streamed reply is coming along, a few times a second (not
        per token, and never kept in events.jsonl)."""
        if not self._due(f"llm:{step_id}"):
            return
        step = self.run.spec.steps[self._index[step_id]]
        data = {"output_tokens": progress.output_tokens, "elapsed_s": progress.elapsed_s}
        self._emit(EventType.LLM_PROGRESS, step, message=progress.model, data=data)

    def _due(self, stream: str) -> bool:
        """Whether a progress stream may show again (each stream at most every 0.2 s)."""
        now_s = clock.monotonic()
        if now_s - self._last_progress.get(stream, 0.0) < PROGRESS_EVERY_S:
            return False
        self._last_progress[stream] = now_s
        return True

    def _record_call(self, call: CallRecord) -> None:
        """Append the call record; the run's totals are saved with the next state write."""
        record = call.to_json()
        self.run.run_dir.append_call(record)
        self.run.state.usage.add_call(record)

    async def execute(self) -> RunResult:
        state = self.run.state
        state.status, state.pid, state.error, state.finished_at = (
            RunStatus.RUNNING,
            os.getpid(),
            None,
            None,
        )
        state.paused_after = state.pause_reason = None
        self.journal.snapshot(state)
        self._emit(
            EventType.RUN_STARTED, data={"plan": [d.action.value for d in self.run.decisions]}
        )
        if stopped := self.processes.stop_all():  # this process holds the run: none are ours
            self._emit(
                EventType.LOG,
                message=f"stopped {stopped} process group(s) of shell steps or worker "
                "processes that the last runner of this run left running when it was killed",
                data={"level": "warning"},
            )
        try:
            return await self._follow_plan()
        except RunInterrupted as exc:
            return self._finish(RunStatus.INTERRUPTED, exc.message, self.hooks.interrupts.exit_code)
        except BudgetReached as exc:  # paused before the call that could pass the budget
            state.pause_reason = "budget"
            return self._finish(RunStatus.PAUSED, exc.message, exc.exit_code, hint=exc.hint)
        except asyncio.CancelledError:
            self._finish(RunStatus.INTERRUPTED, "cancelled", 130)
            raise
        except Exception as exc:  # a refused write, or a bug: leave a resumable, truthful state
            if isinstance(exc, StepLineError):  # a known fault, already explained (disk full)
                message = exc.message
            else:
                message = f"internal error: {type(exc).__name__}: {exc}"
            for record in self.run.state.steps:
                if record.status == StepStatus.RUNNING:
                    record.status, record.error = StepStatus.FAILED, message
            with contextlib.suppress(StepLineError):  # the same full disk: report the first
                self._finish(RunStatus.FAILED, message, 1)
            raise
        finally:
            await self.executors.close()
            await self.providers.aclose()
            self.cache.close()
            self.items.close()
            self.journal.close()
            self.run.run_dir.close()

    async def _follow_plan(self) -> RunResult:
        """Start each unit of the plan as soon as the steps it waits for are done, at most
        ``--jobs`` (``max_parallel_steps``) at once, and end the run once nothing runs.

        What stops the run stops only new starts: steps already running finish and are
        recorded first (a critical failure, a pause answered with stop, a full budget); a
        signal interrupts them all, and each is left pending for the resume.
        """
        spec = self.run.spec
        schedule = Schedule(
            units_of(self.run.decisions, [step.stream_items for step in spec.steps]),
            self.run.graph,
            self.run.jobs or spec.max_parallel_steps,
        )
        tasks: dict[asyncio.Future[UnitEnd], Unit] = {}
        ending = _Ending()
        try:
            while True:
                started = self._start_ready(schedule)
                if len(started) == 1 and not tasks:  # alone: nothing can start until it ends
                    unit, work = started[0]
                    await self._after_unit(unit, await _ended(work), schedule, ending)
                    continue
                for unit, work in started:
                    tasks[asyncio.ensure_future(work)] = unit
                if not tasks:
                    break
                if self._unsaved:  # nothing starts now: the ends recorded so far go to disk
                    self._save()
                finished, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(finished, key=lambda task: tasks[task].decisions[0].number):
                    unit = tasks.pop(task)
                    await self._after_unit(unit, _result_of(task), schedule, ending)
        except BaseException:
            await self._abandon(tasks)
            raise
        return self._end_run(ending, stopped=bool(schedule.stopped))

    def _start_ready(self, schedule: Schedule) -> list[tuple[Unit, Coroutine[Any, Any, UnitEnd]]]:
        """Start every unit that may start now, in list order, and return the work of those
        that run; a reused or skipped step is done at once, which may let the next start."""
        started: list[tuple[Unit, Coroutine[Any, Any, UnitEnd]]] = []
        try:
            while (unit := schedule.next_ready()) is not None:
                work = self._start(unit, schedule)
                if work is not None:
                    started.append((unit, work))
        except BaseException:  # a signal, or a refused write: what began is not running
            for unit, work in started:
                work.close()
                for decision in unit.decisions:
                    record = self.run.state.steps[decision.number - 1]
                    record.status, record.started_at = StepStatus.PENDING, None
                    self._stopped_running(record)
            raise
        return started

    def _start(self, unit: Unit, schedule: Schedule) -> Coroutine[Any, Any, UnitEnd] | None:
        """Skip or reuse ``unit`` now (None), or begin its steps and return their work."""
        if self._unsaved and unit.action is not Action.RUN:
            self._save()  # a step's end waits for the next step's start only
        self.hooks.interrupts.check()
        steps = [self.run.spec.steps[d.number - 1] for d in unit.decisions]
        records = [self.run.state.steps[d.number - 1] for d in unit.decisions]
        if unit.action is Action.RUN:
            work = self._begin(unit, steps, records)
            if work is not None:
                return work
        elif unit.action is Action.REUSE:
            self._reuse(steps[0], records[0])
        elif steps[0].enabled and steps[0].when is not None:  # the plan asked its condition
            self._skip_by_condition(steps[0], records[0], unit.decisions[0].reason)
        else:
            _forget_output(records[0])
            records[0].status = StepStatus.SKIPPED
            self._save()
            self._emit(EventType.STEP_SKIPPED, steps[0], message=unit.decisions[0].reason)
        schedule.finish(unit)
        return None

    def _begin(
        self, unit: Unit, steps: Sequence[StepBase], records: Sequence[StepState]
    ) -> Coroutine[Any, Any, UnitEnd] | None:
        """Begin the steps of ``unit`` and return their work; None when the step's ``when``,
        asked now, skips it (a condition that fails is the step's failure)."""
        if len(steps) == 1 and steps[0].when is not None:
            asked = self._ask_condition(steps[0], records[0], unit.decisions[0])
            if asked is False:
                return None
            if asked is not True:
                return _already(steps[0], asked)
        for step, record, decision in zip(steps, records, unit.decisions, strict=True):
            self._begin_step(step, record, decision)
        if len(steps) == 2:
            return self._run_chain(*unit.decisions)
        return self._run_step(steps[0], records[0])

    def _ask_condition(
        self, step: StepBase, record: StepState, decision: Decision
    ) -> bool | StepFailed:
        """Ask ``step``'s ``when`` with the outputs it sees: True runs it; False, and the step
        is recorded skipped; a condition that fails fails the step (begun, so it is recorded
        like any failure), and that failure comes back."""
        try:
            if conditions.holds(step, self._environment(step).template_context()):
                record.when = True
                return True
        except StepLineError as exc:
            self._begin_step(step, record, decision)
            failure = StepFailed(step.id, exc.message, hint=exc.hint, retryable=False)
            self._record_failure(step, record, failure, 0.0)
            return failure
        self._skip_by_condition(step, record, "when gave false")
        return False

    def _skip_by_condition(self, step: StepBase, record: StepState, reason: str) -> None:
        """Record ``step`` skipped by its ``when``: the steps after it read none."""
        _forget_output(record)
        record.status, record.when, record.error = StepStatus.SKIPPED, False, None
        self._remember(step.id, None)
        self._save()
        self._emit(EventType.STEP_SKIPPED, step, message=reason)

    async def _after_unit(
        self, unit: Unit, result: UnitEnd | BaseException, schedule: Schedule, ending: _Ending
    ) -> None:
        """Take in how a unit ended: a stop, a failure, or a pause point to ask at; once a
        stop or a critical failure is known, nothing more starts."""
        schedule.finish(unit)
        try:
            if isinstance(result, RunInterrupted | BudgetReached | asyncio.CancelledError):
                ending.stop = ending.stop or result
                return
            if isinstance(result, BaseException):  # a bug, or a refused write: not a step's
                raise result
            failed_step, failure = result
            if failure is not None:
                if failed_step.critical and ending.failure is None:
                    ending.failure = failure
                return
            last_step = self.run.spec.steps[unit.decisions[-1].number - 1]
            last_record = self.run.state.steps[unit.decisions[-1].number - 1]
            pausing = last_step.pause and not ending.stops_starts
            if pausing and await self._pause_stops(last_step, last_record):
                ending.paused_after = last_step
        finally:
            schedule.holding = ending.stops_starts

    async def _abandon(self, tasks: dict[asyncio.Future[UnitEnd], Unit]) -> None:
        """Cancel the units still running (the run itself was cancelled, or failed inside)
        and wait for each to record itself; one cancelled before it began is left pending."""
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for unit in tasks.values():
            for decision in unit.decisions:
                record = self.run.state.steps[decision.number - 1]
                if record.status == StepStatus.RUNNING:
                    record.status, record.started_at = StepStatus.PENDING, None
                    self._stopped_running(record)

    def _end_run(self, ending: _Ending, *, stopped: bool) -> RunResult:
        """The run's status once nothing runs: interrupted, failed, paused, or done."""
        if ending.stop is not None:
            raise ending.stop
        if ending.failure is not None:
            failure = ending.failure
            return self._finish(RunStatus.FAILED, failure.message, 1, hint=failure.hint)
        if ending.paused_after is not None:
            return self._pause(ending.paused_after, reason="review")
        if stopped:
            return self._stop_at_to_step()
        return self._finish(RunStatus.COMPLETED, None, 0)

    async def _run_chain(
        self, first: Decision, second: Decision
    ) -> tuple[StepBase, StepLineError | None]:
        """Run a fan-out step and the step that streams its items, at the same time.

        Each step's record is written as it would be on its own, the first step's first (the
        second reads its output hash). The failure reported is the one that stops the run: a
        critical step's, and of those the cause rather than the consequence.
        """
        up, down = (self.run.spec.steps[d.number - 1] for d in (first, second))
        up_record, down_record = (self.run.state.steps[d.number - 1] for d in (first, second))
        stream = ItemStream(up.id, 2 * self._concurrency(down))
        self._streams.update({up.id: stream, down.id: stream})
        try:
            started = clock.monotonic()
            results = await asyncio.gather(
                self._execute_streaming(up, stream, producer=True),
                self._execute_streaming(down, stream, producer=False),
                return_exceptions=True,
            )
        finally:
            self._streams.pop(up.id, None)
            self._streams.pop(down.id, None)
        elapsed = clock.monotonic() - started
        stops = RunInterrupted | BudgetReached | asyncio.CancelledError
        stop = next((r for r in results if isinstance(r, stops)), None)
        if stop is not None:  # not either step's failure: both wait, pending, for the resume
            for record in (up_record, down_record):
                record.status, record.started_at = StepStatus.PENDING, None
            self._stopped_running(up_record, down_record)
            raise stop
        up_failure = self._end_step_with(up, up_record, results[0], elapsed)
        down_failure = self._end_step_with(down, down_record, results[1], elapsed)
        failures = [(up, up_failure), (down, down_failure)]
        if stream.abandoned:  # the downstream step failed first; the upstream one stopped
            failures.reverse()
        for step, failure in failures:
            if failure is not None and step.critical:
                return step, failure
        return next(((s, f) for s, f in failures if f is not None), (up, None))

    async def _execute_streaming(
        self, step: StepBase, stream: ItemStream, *, producer: bool
    ) -> StepOutcome:
        """One side of a chain; a side that fails before its items start still releases the
        other (closing or abandoning the stream), so neither waits for ever."""
        try:
            return await self._execute(step)
        except BaseException:
            await (stream.close(failed=True) if producer else stream.abandon())
            raise

    def _concurrency(self, step: StepBase) -> int:
        """Items at once: --concurrency, else the step's, else the pipeline's (on processes,
        at most one per worker)."""
        concurrency = self.run.concurrency or step.concurrency or self.run.spec.concurrency
        return self.executors.items_at_once(step, concurrency)

    def _reuse(self, step: StepBase, record: StepState) -> None:
        assert record.output is not None  # the plan reuses only steps with an output
        value = self.run.run_dir.read_output(record.output)
        self._remember(step.id, value)
        if record.output_hash != self.output_hashes[step.id]:
            record.output_hash = self.output_hashes[step.id]
            self._save()
            self._emit(EventType.OUTPUT_EDITED, step, message=record.output)
        self._emit(EventType.STEP_REUSED, step)

    async def _run_step(
        self, step: StepBase, record: StepState
    ) -> tuple[StepBase, StepLineError | None]:
        """Run one begun step and record the result, with the failure of a step that failed."""
        started = clock.monotonic()
        try:
            result: StepOutcome | BaseException = await self._execute(step)
        except StepLineError as exc:
            result = exc
        return step, self._end_step_with(step, record, result, clock.monotonic() - started)

    def _begin_step(self, step: StepBase, record: StepState, decision: Decision) -> None:
        _forget_output(record)
        record.status, record.error = StepStatus.RUNNING, None
        record.started_at, record.finished_at, record.duration_s = now(), None, None
        record.attempts += 1
        self._running[record.number] = record.id
        self._note_current_step()
        self._save()
        self._emit(EventType.STEP_STARTED, step, message=decision.reason)

    def _end_step_with(
        self,
        step: StepBase,
        record: StepState,
        result: StepOutcome | BaseException,
        elapsed: float,
    ) -> StepLineError | None:
        """Record a step's outcome or failure; an interruption leaves it pending and goes on."""
        if isinstance(result, RunInterrupted | BudgetReached | asyncio.CancelledError):
            record.status, record.started_at = StepStatus.PENDING, None
            self._stopped_running(record)
            raise result
        if isinstance(result, StepLineError):
            if self.debug:  # where the step's error came from: the provider's or user's code
                traceback.print_exception(result, file=sys.stderr)
            failure = (
                result
                if isinstance(result, StepFailed)
                else StepFailed(step.id, result.message, hint=result.hint)
            )
            self._record_failure(step, record, failure, elapsed)
            return failure
        if isinstance(result, BaseException):
            raise result
        self._record_success(step, record, result, elapsed)
        return None

    async def _execute(self, step: StepBase) -> StepOutcome:
        streamed = {self._streams[step.id].producer} if step.id in self._streams else set()
        needed = self.run.needs[step.id].steps - streamed
        missing = sorted(name for name in needed if name not in self.outputs)
        if missing:
            raise StepFailed(
                step.id,
                f'needs the output of step "{missing[0]}", which has none in this run',
                hint=f'fix step "{missing[0]}" first (see pipeline show)',
            )
        failed = [
            name for name in step.needs or () if self._record_of(name).status == StepStatus.FAILED
        ]
        if failed:
            raise StepFailed(
                step.id,
                f'needs step "{failed[0]}", which failed in this run',
                hint=f'fix step "{failed[0]}" first (see pipeline show)',
            )
        env = self._environment(step)
        placed = self.executors.metrics_of(step)
        await self.hooks.interrupts.guard(self.executors.ready(step))
        if step.fans_out:
            outcome = await self.hooks.interrupts.guard(self._fan_out(step, env))
            return replace(outcome, metrics={**outcome.metrics, **placed})
        outcome, attempts = await self.hooks.interrupts.guard(
            attempts_of(step, lambda: self.executors.run(step, env), env.log)
        )
        if attempts > 1:
            placed["attempts"] = attempts
        return replace(outcome, metrics={**outcome.metrics, **placed})

    async def _fan_out(self, step: StepBase, env: StepEnvironment) -> StepOutcome:
        needs = self.run.needs[step.id]
        stream = self._streams.get(step.id)
        inbound = stream if stream is not None and stream.producer != step.id else None
        fan_out = FanOut(
            step,
            env,
            self.items,
            base_fingerprint=self._item_base_fingerprint(step),
            list_hashes={
                name: self.output_hashes[name]
                for name in sorted(needs.item_source)
                if name in self.output_hashes  # a streamed list has no hash until it ends
            },
            uses_index=needs.uses_item_index,
            concurrency=self._concurrency(step),
            retry_failed=not self.run.skip_failed,
            reuse_items=not self.run.fresh_items,
            show=lambda progress: self._show_items(step, progress),
            inbound=inbound,
            outbound=stream if stream is not None and stream.producer == step.id else None,
        )
        return await fan_out.run()

    def _item_base_fingerprint(self, step: StepBase) -> str:
        """What every item of a fan-out step depends on besides itself: the step's spec and
        the outputs it reads other than through ``for_each``."""
        return item_base_fingerprint(
            self.run.spec,
            step,
            self.run.needs[step.id],
            self.run.variables,
            output_hashes=self.output_hashes,
            input_hash=self.run.input.hash,
        )

    def _show_items(self, step: StepBase, progress: FanOutProgress) -> None:
        """Item progress for the listener, at most a few times a second (never persisted)."""
        finished = progress.total > 0 and progress.done + progress.failed >= progress.total
        if self._due(f"items:{step.id}") or finished:
            self._emit(EventType.ITEM_PROGRESS, step, data=asdict(progress))

    def _record_of(self, step_id: str) -> StepState:
        return self.run.state.steps[self._index[step_id]]

    def _visible(self, step: StepBase) -> dict[str, Any]:
        """The outputs ``step`` may read: those of the steps it waits for. A step that ran
        at the same time, or a later one that finished first, is never among them."""
        waits_for = self.run.graph.dependencies[step.id]
        return {name: value for name, value in self.outputs.items() if name in waits_for}

    def _environment(self, step: StepBase) -> StepEnvironment:
        index = self._index[step.id]
        return StepEnvironment(
            spec=self.run.spec,
            run_id=self.run.state.run_id,
            run_dir=self.run.run_dir.path.resolve(),
            input=self.run.input,
            outputs=self._visible(step),
            undeclared=frozenset(self.run.spec.step_ids[:index])
            - self.run.graph.dependencies[step.id],
            vars=self.run.variables,
            llm=self.llm,
            log=step_logger(step.id, lambda message, level: self._log(step, message, level)),
            processes=self.processes,
            executors=self.executors,
        )

    def _record_success(
        self, step: StepBase, record: StepState, outcome: StepOutcome, elapsed: float
    ) -> None:
        suffix = ".jsonl" if isinstance(outcome.value, RowStream) else ".json"
        relative = self.run.run_dir.output_name(record.number, step.id, suffix)
        record.output_hash = self.run.run_dir.write_output(relative, outcome.value)
        record.output = relative
        record.reads = self._reads(step, outcome)
        record.spec_hash = self.run.spec_hashes[step.id]
        record.spec_parts = self.run.spec_parts.get(step.id, {})
        record.fingerprint = fingerprint(record.spec_hash, record.reads)
        record.metrics = outcome.metrics
        self._end_step(record, StepStatus.COMPLETED, elapsed)
        value = outcome.value
        if isinstance(value, RowStream):  # later steps stream it from the file
            value = self.run.run_dir.read_output(relative)
        self._remember(step.id, value, record.output_hash)
        self._emit(EventType.STEP_COMPLETED, step, data={"duration_s": record.duration_s})

    def _record_failure(
        self, step: StepBase, record: StepState, failure: StepLineError, elapsed: float
    ) -> None:
        message = failure.message
        artifact = getattr(failure, "artifact", None)
        if artifact is not None:
            relative = self.run.run_dir.output_name(record.number, step.id)
            relative = relative.removesuffix(".json") + ".failed.txt"
            self.run.run_dir.write_text(relative, artifact)
            message += f" (the reply is saved in {relative})"
            failure.message = message
        record.error = message
        self._end_step(record, StepStatus.FAILED, elapsed)
        hint = {"hint": failure.hint} if failure.hint else {}
        self._emit(EventType.STEP_FAILED, step, message=message, data=hint)

    def _end_step(self, record: StepState, status: StepStatus, elapsed: float) -> None:
        """Record a step's end; it is saved with the next state write, which in a sequence of
        steps is the next one's start, a moment later: one durable write per step, not two.
        Every other way on (a pause, a reused or skipped step, the run's end) saves first."""
        record.status, record.finished_at, record.duration_s = status, now(), round(elapsed, 3)
        self._stopped_running(record)
        if self._asking:  # the scheduler waits for a person: nothing else would save it soon
            self._save()
        else:
            self._unsaved = True

    def _stopped_running(self, *records: StepState) -> None:
        """``records`` left status running: ``current_step`` names the first step in the list
        that still runs, if any does."""
        for record in records:
            self._running.pop(record.number, None)
        self._note_current_step()

    def _note_current_step(self) -> None:
        running = self._running
        self.run.state.current_step = running[min(running)] if running else None

    def _reads(self, step: StepBase, outcome: StepOutcome) -> dict[str, str]:
        """The hashes of everything the step read, keyed by step id (and @input)."""
        needs = self.run.needs[step.id]
        if outcome.read_steps is not None:
            names: set[str] = set(outcome.read_steps)
        elif needs.reads_everything:
            names = set(self._visible(step))
        else:
            names = set(needs.steps)
        reads = {name: self.output_hashes[name] for name in sorted(names)}
        if needs.input:
            reads[INPUT_KEY] = self.run.input.hash
        return reads

    def _remember(self, step_id: str, value: Any, value_hash: str | None = None) -> None:
        self.outputs[step_id] = value
        self.output_hashes[step_id] = value_hash or hash_output(value)

    async def _pause_stops(self, step: StepBase, record: StepState) -> bool:
        """At a pause point: True when the run should stop here (status paused)."""
        if self._unsaved:  # the step's end is on disk before anyone is asked anything
            self._save()
        mode = self.hooks.pause_mode
        if mode is PauseMode.ALWAYS:
            return True
        if mode is PauseMode.NEVER or self.hooks.pauser is None:
            why = "pauses are off" if mode is PauseMode.NEVER else "no terminal to ask"
            self._emit(EventType.PAUSE_PASSED, step, message=why)
            return False
        assert record.output is not None
        point = PausePoint(
            run_id=self.run.state.run_id,
            step_id=step.id,
            number=record.number,
            title=step.title,
            output_path=self.run.run_dir.resolve(record.output),
            note=None
            if self.run.replay is None
            else f"this run replays {self.run.replay.name}: an edit changes what the steps "
            "after this one ask, and the cassette has no replies for that; to edit, stop (q) "
            "and resume with --no-replay and an API key",
        )
        self._asking = True  # steps running beside it save their ends at once meanwhile
        try:
            while True:
                keep_going = await self.hooks.interrupts.guard(
                    run_in_thread(self.hooks.pauser, point)
                )
                if not keep_going:
                    return True
                try:
                    self._accept_edits(step, record)
                    return False
                except RunStoreError as exc:
                    point = PausePoint(**{**point.__dict__, "problem": exc.message})
        finally:
            self._asking = False

    def _accept_edits(self, step: StepBase, record: StepState) -> None:
        """Re-read an output a person may have edited at a pause point; an edit that breaks
        the step's schema is refused like broken JSON (the person is asked again), since the
        steps after it were written for what the schema promises."""
        assert record.output is not None
        value = self.run.run_dir.read_output(record.output)
        check_edit(step, self.run.run_dir.resolve(record.output), value)
        previous = record.output_hash
        self._remember(step.id, value)
        if self.output_hashes[step.id] != previous:
            record.output_hash = self.output_hashes[step.id]
            self._save()
            self._emit(EventType.OUTPUT_EDITED, step, message=record.output)

    def _pause(self, step: StepBase, *, reason: str) -> RunResult:
        self.run.state.paused_after, self.run.state.pause_reason = step.id, reason
        return self._finish(RunStatus.PAUSED, f'paused after step "{step.id}" for review', 3)

    def _stop_at_to_step(self) -> RunResult:
        last = self.run.to_step
        assert last is not None  # steps stop only for --to-step
        self.run.state.paused_after, self.run.state.pause_reason = last, "to_step"
        return self._finish(RunStatus.PAUSED, f'stopped after step "{last}" (--to-step)', 0)

    def _finish(
        self, status: RunStatus, message: str | None, exit_code: int, *, hint: str | None = None
    ) -> RunResult:
        state = self.run.state
        state.status, state.error, state.current_step = status, None, None
        if status in (RunStatus.FAILED, RunStatus.INTERRUPTED):
            state.error = message
        if status is not RunStatus.PAUSED:
            state.finished_at = now()
        self.journal.finish(state)
        self._unsaved = False
        event = {
            RunStatus.COMPLETED: EventType.RUN_COMPLETED,
            RunStatus.FAILED: EventType.RUN_FAILED,
            RunStatus.PAUSED: EventType.RUN_PAUSED,
            RunStatus.INTERRUPTED: EventType.RUN_INTERRUPTED,
        }[status]
        self._emit(event, message=message, data={"hint": hint} if hint else {})
        return RunResult(
            run_id=state.run_id,
            run_dir=self.run.run_dir.path,
            status=status,
            exit_code=exit_code,
            state=state,
            decisions=self.run.decisions,
            message=message,
        )

    def _save(self) -> None:
        self.journal.record(self.run.state)
        self._unsaved = False

    def _log(self, step: StepBase, message: str, level: str) -> None:
        self._emit(EventType.LOG, step, message=message, data={"level": level})

    def _emit(
        self,
        kind: EventType,
        step: StepBase | None = None,
        *,
        message: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        number = self._index[step.id] + 1 if step else None
        self.events.emit(
            Event(
                type=kind,
                run_id=self.run.state.run_id,
                step=step.id if step else None,
                number=number,
                total=self.total,
                title=step.title if step else None,
                message=message,
                data=data or {},
            )
        )


UnitEnd = tuple[StepBase, StepLineError | None]
"""How a unit ended: the step to report and its failure, if it failed."""


async def _already(step: StepBase, failure: StepLineError) -> UnitEnd:
    """The end of a unit that failed before it started (its condition failed)."""
    return step, failure


async def _ended(work: Coroutine[Any, Any, UnitEnd]) -> UnitEnd | BaseException:
    """The end of a unit awaited in place, a stop among them (as a task would give it)."""
    try:
        return await work
    except (RunInterrupted, BudgetReached, asyncio.CancelledError) as exc:
        return exc


def _result_of(task: asyncio.Future[UnitEnd]) -> UnitEnd | BaseException:
    if task.cancelled():
        return asyncio.CancelledError()
    return task.exception() or task.result()


@dataclass
class _Ending:
    """What will end the run once nothing runs any more, as units report in."""

    stop: BaseException | None = None  # a signal, a full budget, a cancelled run
    failure: StepLineError | None = None  # the first critical step's failure
    paused_after: StepBase | None = None  # a pause point answered with stop

    @property
    def stops_starts(self) -> bool:
        return self.stop is not None or self.failure is not None or self.paused_after is not None


def _forget_output(record: StepState) -> None:
    """A step that runs again (or is skipped) no longer owns its earlier output.

    The file stays on disk until a new output replaces it (and moves it to history/), but
    the state stops pointing at it, so nothing reads a stale value as this run's result.
    """
    record.output = record.output_hash = record.fingerprint = record.spec_hash = None
    record.reads, record.metrics, record.spec_parts = {}, {}, {}
