"""Start, resume, preview and validate runs: the operations the CLI and ``stepline.run`` share.

Each operation checks everything first and writes nothing until the checks pass. A run holds
its folder's lock from before the state is read until the last state write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

from stepline.engine.contract import Hooks, PreparedRun, RunResult
from stepline.engine.estimates import budget_outlook, estimate_llm_steps
from stepline.engine.prepare import (
    Preview,
    RunOptions,
    align_steps,
    input_data,
    new_state,
    preflight,
    prepare_run,
    resume_spec,
)
from stepline.engine.references import analyse_spec
from stepline.engine.runner import Runner
from stepline.errors import InputError
from stepline.settings import Settings
from stepline.spec import LLMStep, PipelineSpec, PythonStep, config_hash, load_spec
from stepline.store.lock import RunLock
from stepline.store.rundir import RunDir
from stepline.store.runs import RunStore
from stepline.store.state import load_state
from stepline.usercode import resolve_function


def validate_config(config_path: Path, variables: dict[str, str] | None = None) -> PipelineSpec:
    """Load a config and run every check that needs no input: references, models, imports."""
    spec = load_spec(config_path)
    analyse_spec(spec, {**spec.vars, **(variables or {})})
    for step in spec.steps:
        if not step.enabled:
            continue
        if isinstance(step, LLMStep):
            spec.llm_params(step)
        elif isinstance(step, PythonStep):
            resolve_function(step.id, step.function, spec.base_dir)
    return spec


def preview_new_run(
    config_path: Path, input_path: Path, *, settings: Settings, options: RunOptions
) -> Preview:
    """What ``run`` would do (for --dry-run); writes nothing."""
    prepared = _plan_new_run(config_path, input_path, settings=settings, options=options)
    return _preview(prepared, settings, options)


def preview_resume(
    run_id: str, *, settings: Settings, options: RunOptions, config_path: Path | None = None
) -> Preview:
    """What ``resume`` would do (for --dry-run); writes nothing and takes no lock."""
    run_dir = RunStore(settings.workdir).open(run_id)
    prepared, options = _plan_resume(run_dir, options=options, config_path=config_path)
    return _preview(prepared, settings, options)


async def start_run(
    config_path: Path,
    input_path: Path,
    *,
    settings: Settings,
    options: RunOptions,
    hooks: Hooks,
) -> RunResult:
    """Create a run folder for ``input_path`` and run the pipeline in it."""
    prepared = _plan_new_run(config_path, input_path, settings=settings, options=options)
    preflight(prepared.spec, prepared.decisions, settings, options)
    run_dir = prepared.run_dir
    run_dir.create()
    with RunLock(run_dir.lock_path, run_dir.run_id):
        copy = run_dir.copy_input(input_path)
        # Same bytes as planned with; only the path moves to the copy inside the run.
        prepared.input = replace(prepared.input, path=run_dir.resolve(copy).resolve())
        run_dir.write_config(prepared.spec.source_text)
        return await Runner(prepared, settings, hooks).execute()


async def resume_run(
    run_id: str,
    *,
    settings: Settings,
    options: RunOptions,
    hooks: Hooks,
    config_path: Path | None = None,
) -> RunResult:
    """Continue a run: reuse what is complete and unchanged, run the rest."""
    run_dir = RunStore(settings.workdir).open(run_id)
    with RunLock(run_dir.lock_path, run_dir.run_id):
        run_dir.clean_leftovers()
        prepared, options = _plan_resume(run_dir, options=options, config_path=config_path)
        preflight(prepared.spec, prepared.decisions, settings, options)
        run_dir.write_config(prepared.spec.source_text)
        return await Runner(prepared, settings, hooks).execute()


def run(
    config_path: Path,
    input_path: Path,
    *,
    settings: Settings,
    options: RunOptions,
    hooks: Hooks,
    handle_signals: bool = False,
) -> RunResult:
    """``start_run`` on a new event loop (what the CLI and ``stepline.run`` call)."""
    work = start_run(config_path, input_path, settings=settings, options=options, hooks=hooks)
    return _blocking(work, hooks, handle_signals=handle_signals)


def resume(
    run_id: str,
    *,
    settings: Settings,
    options: RunOptions,
    hooks: Hooks,
    config_path: Path | None = None,
    handle_signals: bool = False,
) -> RunResult:
    """``resume_run`` on a new event loop (what the CLI and ``stepline.resume`` call)."""
    work = resume_run(
        run_id, settings=settings, options=options, hooks=hooks, config_path=config_path
    )
    return _blocking(work, hooks, handle_signals=handle_signals)


def _blocking(
    work: Coroutine[Any, Any, RunResult], hooks: Hooks, *, handle_signals: bool
) -> RunResult:
    """Await ``work``; with ``handle_signals`` SIGINT/SIGTERM stop the run cleanly."""

    async def main() -> RunResult:
        if handle_signals:
            hooks.interrupts.install()
        try:
            return await work
        finally:
            if handle_signals:
                hooks.interrupts.uninstall()

    return asyncio.run(main())


def _plan_new_run(
    config_path: Path, input_path: Path, *, settings: Settings, options: RunOptions
) -> PreparedRun:
    spec = load_spec(config_path)
    data = input_data(input_path, input_path.name)
    run_dir = RunStore(settings.workdir).planned_run(options.run_id)
    state = new_state(spec, run_dir, input_path, data.hash)
    state.vars = dict(options.variables)
    state.overrides = dict(options.overrides)
    state.max_cost_usd = options.max_cost
    options = options.sticking_to(state)
    return prepare_run(spec.with_llm_overrides(state.overrides), state, run_dir, data, options)


def _plan_resume(
    run_dir: RunDir, *, options: RunOptions, config_path: Path | None
) -> tuple[PreparedRun, RunOptions]:
    """The resume's plan, and its options with those the run keeps (``--replay``...)."""
    state = load_state(run_dir.state_path)
    spec = resume_spec(state, run_dir, config_path)
    state.steps = align_steps(state.steps, spec)
    state.pipeline = spec.name
    if spec.source_path is not None and spec.source_path != run_dir.config_path.resolve():
        state.config_path = str(spec.source_path)  # a snapshot never replaces the real path
    state.config_hash = config_hash(spec.source_text)
    state.vars = {**state.vars, **options.variables}
    state.overrides = {**state.overrides, **options.overrides}
    if options.max_cost is not None:
        state.max_cost_usd = options.max_cost
    options = options.sticking_to(state)
    data = input_data(run_dir.resolve(state.input_copy), Path(state.input_path).name)
    spec = spec.with_llm_overrides(state.overrides)
    return prepare_run(spec, state, run_dir, data, options), options


def _preview(prepared: PreparedRun, settings: Settings, options: RunOptions) -> Preview:
    estimates = estimate_llm_steps(prepared, settings, replay=options.replay)
    warnings = _soft_preflight(prepared, settings, options)
    return Preview(prepared, warnings, estimates, budget_outlook(prepared, estimates))


def _soft_preflight(prepared: PreparedRun, settings: Settings, options: RunOptions) -> list[str]:
    """Missing credentials are a warning in a preview; config problems still fail."""
    try:
        preflight(prepared.spec, prepared.decisions, settings, options)
    except InputError as exc:
        return [exc.message]
    return []


__all__ = [
    "Preview",
    "RunOptions",
    "preview_new_run",
    "preview_resume",
    "resume_run",
    "resume",
    "run",
    "start_run",
    "validate_config",
]
