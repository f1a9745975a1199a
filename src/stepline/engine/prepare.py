"""Everything that happens before step 1: load, check, plan, and (unless dry) set up the folder.

All checks that can fail with exit 2 (config, input, references, imports, credentials) run
before anything is written, so a wrong command line never leaves a half-made run behind.
"""

from __future__ import annotations

import codecs
import difflib
import hashlib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_args

from stepline.context import check_input_size
from stepline.engine.conditions import condition_reads, known_now
from stepline.engine.contract import PreparedRun
from stepline.engine.estimates import BudgetOutlook, LLMEstimate
from stepline.engine.fingerprint import changed_parts, spec_identity
from stepline.engine.graph import StepGraph, step_graph
from stepline.engine.plan import Action, Decision, StepFacts, plan_run
from stepline.engine.references import analyse_spec
from stepline.errors import InputError
from stepline.hashing import HASH_TAG
from stepline.providers import check_credentials
from stepline.providers.requests import targets
from stepline.settings import Settings
from stepline.spec import (
    ExecutorName,
    LLMStep,
    PipelineSpec,
    PythonStep,
    StepBase,
    config_hash,
    load_spec,
    parse_spec,
)
from stepline.steps import InputData
from stepline.store.items import read_item_progress
from stepline.store.jsonl import hash_output
from stepline.store.rundir import RunDir
from stepline.store.state import INPUT_KEY, RunState, StepState, StepStatus
from stepline.usercode import resolve_function
from stepline.workers.placement import check_executors

CHUNK_BYTES = 1 << 20


@dataclass
class RunOptions:
    """What the command line says about a run beyond the config: the options of ``pipeline
    run`` and ``resume``, by their long names (``variables`` is ``--set``). The CLI and
    ``stepline.run`` / ``resume`` / ``plan`` build this one type, and nothing renames them
    on the way to the runner.

    ``model``, ``provider``, ``batch``, ``variables``, ``max_cost``, ``replay``,
    ``concurrency``, ``jobs`` and ``executor`` stick to the run: a resume without them uses
    what the run was started (or last resumed) with, so the resume command a run prints
    always works.
    """

    run_id: str | None = None  # run only: the new run's id (default: generated)
    variables: dict[str, str] = field(default_factory=dict)  # --set NAME=VALUE
    from_step: str | None = None
    to_step: str | None = None
    model: str | None = None  # forced on every LLM step
    provider: str | None = None  # forced on every LLM step
    concurrency: int | None = None  # items at once in every fan-out step
    jobs: int | None = None  # steps at once (else the config's max_parallel_steps)
    executor: str | None = None  # where every Python and shell step runs (an ExecutorName)
    max_cost: float | None = None  # the run's LLM budget in USD
    batch: bool = False  # fan-out LLM steps go through the provider's batch API
    no_cache: bool = False  # skip response cache reads (fresh replies are still stored)
    replay: Path | None = None  # answer LLM steps from this cassette, offline
    no_replay: bool = False  # resume only: call the providers, not the run's cassette
    record: Path | None = None  # append every real completion to this cassette
    skip_failed: bool = False  # resume only: keep failed fan-out items failed
    fresh_items: bool = False  # resume only: redo every item of the fan-out steps that run
    check_credentials: bool = True  # False: let a run without API keys start (tests, previews)

    def __post_init__(self) -> None:
        """Paths may come as text from Python callers; variables as any mapping."""
        self.replay = Path(self.replay) if self.replay is not None else None
        self.record = Path(self.record) if self.record is not None else None
        self.variables = {str(key): str(value) for key, value in self.variables.items()}
        if self.replay is not None and self.no_replay:
            raise InputError("--replay and --no-replay contradict each other; pass one")
        executors = get_args(ExecutorName)
        if self.executor is not None and self.executor not in executors:
            close = difflib.get_close_matches(self.executor, executors, n=1)
            raise InputError(
                f'--executor "{self.executor}": no such executor'
                + (f'; did you mean "{close[0]}"?' if close else ""),
                hint="executors: " + ", ".join(executors),
            )

    @classmethod
    def of(cls, **options: Any) -> RunOptions:
        """Options from keywords, an unknown one named with the closest known name."""
        known = [item.name for item in fields(cls)]
        for name in options:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                suggestion = f'; did you mean "{close[0]}"?' if close else ""
                raise TypeError(f'unknown run option "{name}"{suggestion}')
        return cls(**options)

    def sticking_to(self, state: RunState) -> RunOptions:
        """These options with the ones the run keeps filled in from ``state`` (a resume),
        and ``state`` updated with the ones given now."""
        replay = self.replay
        if replay is None and state.replay is not None and not self.no_replay:
            replay = Path(state.replay)
        state.replay = None if replay is None else str(replay.resolve())
        concurrency = self.concurrency if self.concurrency is not None else state.concurrency
        state.concurrency = concurrency
        jobs = self.jobs if self.jobs is not None else state.jobs
        state.jobs = jobs
        executor = self.executor if self.executor is not None else state.executor
        state.executor = executor
        return replace(self, replay=replay, concurrency=concurrency, jobs=jobs, executor=executor)

    @property
    def overrides(self) -> dict[str, str]:
        """The LLM settings the command line forces (kept in the run's state for resumes)."""
        given = {
            "model": self.model,
            "provider": self.provider,
            "mode": "batch" if self.batch else None,
        }
        return {key: value for key, value in given.items() if value}


@dataclass
class Preview:
    """A prepared run, problems that would stop it, and LLM estimates (for --dry-run)."""

    prepared: PreparedRun
    warnings: list[str] = field(default_factory=list)
    estimates: list[LLMEstimate] = field(default_factory=list)
    budget: BudgetOutlook | None = None  # the run's budget beside the estimate, when it has one

    @property
    def running(self) -> list[str]:
        """The ids of the steps that would run, in list order."""
        return [d.id for d in self.prepared.decisions if d.action is Action.RUN]

    @property
    def waves(self) -> list[list[str]]:
        """The steps that would run, grouped into those that can run together."""
        return self.prepared.graph.waves(self.running)

    @property
    def critical_path(self) -> list[str]:
        """The longest chain of steps that would run, one after another."""
        return self.prepared.graph.critical_path(self.running)

    @property
    def max_parallel_steps(self) -> int:
        return self.prepared.jobs or self.prepared.spec.max_parallel_steps

    def waits_for(self, step_id: str) -> list[str]:
        """The steps ``step_id`` waits for, in list order."""
        graph = self.prepared.graph
        return [other for other in graph.order if other in graph.dependencies[step_id]]

    def to_json(self) -> dict[str, Any]:
        """What ``--dry-run --json`` prints: the plan, the graph, the warnings, the LLM
        outlook."""
        prepared, budget = self.prepared, self.budget
        return {
            "run_id": prepared.state.run_id,
            "plan": [
                {
                    "number": d.number,
                    "step": d.id,
                    "action": d.action.value,
                    "reason": d.reason,
                    "waits_for": self.waits_for(d.id),
                }
                for d in prepared.decisions
            ],
            "graph": {
                "max_parallel_steps": self.max_parallel_steps,
                "waves": self.waves,
                "critical_path": self.critical_path,
            },
            "warnings": self.warnings,
            "llm": [asdict(estimate) for estimate in self.estimates],
            "budget": None
            if budget is None
            else {**asdict(budget), "left_usd": budget.left_usd, "fits": budget.fits},
        }


def resume_spec(state: RunState, run_dir: RunDir, config_path: Path | None) -> PipelineSpec:
    """The config to resume with: -c, else the recorded path, else the run's snapshot."""
    if config_path is not None:
        return load_spec(config_path)
    recorded = Path(state.config_path) if state.config_path else None
    if recorded is not None and recorded.is_file():
        return load_spec(recorded)
    base_dir = recorded.parent if recorded is not None and recorded.parent.is_dir() else None
    text = run_dir.config_path.read_text(encoding="utf-8")
    return parse_spec(text, source=run_dir.config_path.resolve(), base_dir=base_dir)


def input_data(path: Path, name: str) -> InputData:
    """The input, hashed and checked as UTF-8 a chunk at a time (never read whole here)."""
    if not path.exists():
        raise InputError(f"input file not found: {path}")
    if not path.is_file():
        raise InputError(f"input is not a file: {path}")
    check_input_size(path)
    digest, decoder, offset = hashlib.sha256(), codecs.getincrementaldecoder("utf-8")(), 0
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                digest.update(chunk)
                decoder.decode(chunk)
                offset += len(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise InputError(
            f"input file {path} is not UTF-8 text (byte {offset + exc.start})",
            hint="convert it to UTF-8 first",
        ) from None
    except OSError as exc:
        raise InputError(f"cannot read input file {path}: {exc.strerror}") from None
    return InputData(path=path.resolve(), name=name, hash=HASH_TAG + digest.hexdigest())


def new_state(spec: PipelineSpec, run_dir: RunDir, input_path: Path, input_hash: str) -> RunState:
    source = spec.source_path
    return RunState(
        run_id=run_dir.run_id,
        pipeline=spec.name,
        config_path=str(source) if source else None,
        config_hash=config_hash(spec.source_text),
        input_path=str(input_path.resolve()),
        input_copy=f"input/original{input_path.suffix}",
        input_hash=input_hash,
        steps=align_steps([], spec),
    )


def align_steps(previous: list[StepState], spec: PipelineSpec) -> list[StepState]:
    """Step records in config order: kept by id, new ones pending, removed ones dropped."""
    by_id = {record.id: record for record in previous}
    aligned = []
    for number, step in enumerate(spec.steps, start=1):
        record = by_id.get(step.id)
        if record is None or record.kind != step.kind:
            record = StepState(number=number, id=step.id, kind=step.kind)
        record.number, record.label = number, step.label
        aligned.append(record)
    return aligned


def prepare_run(
    spec: PipelineSpec,
    state: RunState,
    run_dir: RunDir,
    input: InputData,
    options: RunOptions,
) -> PreparedRun:
    """Check the spec against the variables, decide what runs, and bundle it for the runner."""
    variables = {**spec.vars, **state.vars, **options.variables}
    needs = analyse_spec(spec, variables, given=options.variables)
    identities = {  # a disabled step is neither imported nor checked for a model
        step.id: spec_identity(spec, step, needs[step.id], variables) if step.enabled else ("", {})
        for step in spec.steps
    }
    hashes = {step_id: identity[0] for step_id, identity in identities.items()}
    parts = {step_id: identity[1] for step_id, identity in identities.items()}
    graph = step_graph(spec, needs)
    from_step, to_step = _from_and_to(spec, graph, options)
    # Outputs that --from-step replaces are not read: a broken hand edit there is no obstacle.
    kept = [record for record in state.steps if from_step is None or record.id not in from_step]
    on_disk = current_output_hashes(kept, run_dir)
    on_disk[INPUT_KEY] = input.hash
    unfinished = [record.id for record in state.steps if record.status != StepStatus.COMPLETED]
    items = read_item_progress(run_dir.items_path, run_dir.events_path, unfinished)
    facts = []
    records = {record.id: record for record in state.steps}
    for index, (step, record) in enumerate(zip(spec.steps, state.steps, strict=True)):
        own = needs[step.id]
        if own.reads_everything and not isinstance(step, PythonStep):
            depends_on = set(spec.step_ids[:index])
        else:
            depends_on = set(own.steps) | (set(record.reads) - {INPUT_KEY})
        facts.append(
            StepFacts(
                id=step.id,
                enabled=step.enabled,
                previous_status=record.status.value,
                output_present=record.id in on_disk,
                spec_hash=hashes[step.id],
                previous_spec_hash=record.spec_hash,
                config_changes=tuple(
                    changed_parts(step, record.spec_parts, parts.get(step.id, {}))
                ),
                previous_reads=dict(record.reads),
                current_reads={key: on_disk.get(key) for key in record.reads},
                depends_on=frozenset(depends_on),
                failed_items=0 if options.skip_failed else record.metrics.get("items_failed", 0),
                items=items.get(record.id),
                **_condition_facts(step, index, spec, records, run_dir, input, variables),
            )
        )
    return PreparedRun(
        spec=spec,
        run_dir=run_dir,
        state=state,
        input=input,
        needs=needs,
        spec_hashes=hashes,
        spec_parts=parts,
        variables=variables,
        decisions=plan_run(facts, from_step=from_step, to_step=to_step),
        graph=graph,
        to_step=options.to_step and spec.steps[spec.step_index(options.to_step)].id,
        refresh_cache=options.no_cache,
        replay=options.replay,
        record=options.record,
        concurrency=options.concurrency,
        jobs=options.jobs,
        executor=options.executor,
        skip_failed=options.skip_failed,
        fresh_items=options.fresh_items,
        budget_usd=state.max_cost_usd
        if state.max_cost_usd is not None
        else (spec.budget.max_usd if spec.budget else None),
    )


def _from_and_to(
    spec: PipelineSpec, graph: StepGraph, options: RunOptions
) -> tuple[frozenset[str] | None, frozenset[str] | None]:
    """The steps ``--from-step`` re-runs (it and every step that waits for it) and those
    ``--to-step`` runs at most (it and every step it waits for); None when not given."""
    from_step = to_step = None
    if options.from_step:
        first = spec.steps[spec.step_index(options.from_step)].id
        from_step = graph.downstream(first) | {first}
    if options.to_step:
        last = spec.steps[spec.step_index(options.to_step)].id
        to_step = graph.upstream(last) | {last}
    if from_step is not None and to_step is not None and not from_step & to_step:
        first_index = spec.step_index(options.from_step or "")
        if spec.step_index(options.to_step or "") < first_index:
            raise InputError("--to-step comes before --from-step")
        raise InputError(
            f"--to-step {options.to_step} does not wait for --from-step {options.from_step}, "
            "so nothing would re-run",
            hint="see which steps each waits for with --dry-run",
        )
    return from_step, to_step


def _condition_facts(
    step: StepBase,
    index: int,
    spec: PipelineSpec,
    records: dict[str, StepState],
    run_dir: RunDir,
    input: InputData,
    variables: dict[str, Any],
) -> dict[str, Any]:
    """What the plan knows of ``step``'s ``when`` (see ``StepFacts``)."""
    if step.when is None or not step.enabled:
        return {}
    reads = condition_reads(step)
    return {
        "condition": known_now(step, records, run_dir, input, variables),
        "condition_reads": frozenset(spec.step_ids[:index]) if reads is None else reads,
        "previous_condition": records[step.id].when,
    }


def current_output_hashes(records: list[StepState], run_dir: RunDir) -> dict[str, str]:
    """Hash of each completed step's output as it is on disk now (edits included); a step
    its ``when`` skipped has none, which is what the steps after it read."""
    hashes: dict[str, str] = {}
    for record in records:
        if record.status == StepStatus.SKIPPED and record.when is False:
            hashes[record.id] = hash_output(None)
        elif record.status == StepStatus.COMPLETED and record.output:
            current = run_dir.output_hash(record.output)
            if current is not None:
                hashes[record.id] = current
    return hashes


def preflight(
    spec: PipelineSpec, decisions: list[Decision], settings: Settings, options: RunOptions
) -> None:
    """Fail (exit 2) on what would stop a step that is about to run."""
    if options.replay is not None and not options.replay.is_file():
        raise InputError(f"cassette not found: {options.replay}")
    running = [spec.steps[d.number - 1] for d in decisions if d.action is Action.RUN]
    check_executors(spec, running, options.executor)
    for decision in decisions:
        if decision.action is not Action.RUN:
            continue
        step = spec.steps[decision.number - 1]
        if isinstance(step, PythonStep):
            resolve_function(step.id, step.function, spec.base_dir)
        elif isinstance(step, LLMStep):
            _check_llm_step(spec, step, settings, options)


def _check_llm_step(
    spec: PipelineSpec, step: LLMStep, settings: Settings, options: RunOptions
) -> None:
    """A replayed step needs its cassette; any other needs each of its providers' keys."""
    params = spec.llm_params(step)
    if options.replay is not None:
        return
    if params.provider == "replay":
        cassette = spec.base_dir / (params.cassette or "")
        if not cassette.is_file():
            raise InputError(
                f'step "{step.id}": cassette not found: {cassette}',
                hint="record one with --record FILE; the path is relative to the config's folder",
            )
        return
    if options.check_credentials:
        for target in targets(params):  # the fallbacks' providers too
            check_credentials(target.provider, settings, target.base_url)
