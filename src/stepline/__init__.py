"""stepline: run multi-step, LLM-backed pipelines in resumable work folders.

Use it from Python the way the CLI does::

    import stepline

    result = stepline.run("pipeline-config.yaml", "notes.txt")
    print(result.status, result.outputs["extract"])
    result = stepline.resume(result.run_id, from_step="count")

The engine is imported on first use, so ``import stepline`` stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stepline.engine.contract import Hooks, RunResult
    from stepline.settings import Settings

__version__ = "0.1.0"

StrPath = str | PathLike[str]


def run(
    config: StrPath,
    input: StrPath,
    *,
    run_id: str | None = None,
    variables: Mapping[str, str] | None = None,
    from_step: str | None = None,
    to_step: str | None = None,
    workdir: StrPath | None = None,
    model: str | None = None,
    provider: str | None = None,
    concurrency: int | None = None,
    max_cost: float | None = None,
    batch: bool = False,
    hooks: Hooks | None = None,
) -> RunResult:
    """Start a run of the pipeline at ``config`` on ``input``; return how it ended.

    ``model`` / ``provider`` force a model or provider on every LLM step, like ``--model`` and
    ``--provider``; ``concurrency`` is ``--concurrency``, ``max_cost`` is ``--max-cost``,
    ``batch`` is ``--batch``. Pause
    points are passed unless ``hooks`` says otherwise. Errors in the config or the input raise
    ``stepline.errors.StepLineError`` subclasses before anything is written.
    """
    from stepline.engine import api
    from stepline.engine.prepare import RunOptions

    settings = _settings(workdir)
    options = RunOptions(
        from_step=from_step,
        to_step=to_step,
        variables=dict(variables or {}),
        model=model,
        provider=provider,
        concurrency=concurrency,
        max_cost=max_cost,
        batch=batch,
        run_id=run_id,
    )
    return api.run(
        Path(config),
        Path(input),
        settings=settings,
        options=options,
        hooks=hooks or _default_hooks(),
    )


def resume(
    run_id: str,
    *,
    config: StrPath | None = None,
    variables: Mapping[str, str] | None = None,
    from_step: str | None = None,
    to_step: str | None = None,
    workdir: StrPath | None = None,
    model: str | None = None,
    provider: str | None = None,
    concurrency: int | None = None,
    max_cost: float | None = None,
    batch: bool = False,
    skip_failed: bool = False,
    fresh_items: bool = False,
    hooks: Hooks | None = None,
) -> RunResult:
    """Continue a run: completed, unchanged steps are reused and the rest run (the keyword
    arguments are the options of ``pipeline resume``)."""
    from stepline.engine import api
    from stepline.engine.prepare import RunOptions

    settings = _settings(workdir)
    options = RunOptions(
        from_step=from_step,
        to_step=to_step,
        variables=dict(variables or {}),
        model=model,
        provider=provider,
        concurrency=concurrency,
        max_cost=max_cost,
        batch=batch,
        skip_failed=skip_failed,
        fresh_items=fresh_items,
    )
    return api.resume(
        run_id,
        settings=settings,
        options=options,
        hooks=hooks or _default_hooks(),
        config_path=Path(config) if config is not None else None,
    )


def _settings(workdir: StrPath | None) -> Settings:
    from stepline.settings import check_workdir, load_settings

    settings = load_settings(workdir=Path(workdir) if workdir is not None else None)
    check_workdir(settings.workdir)
    return settings


def _default_hooks() -> Hooks:
    from stepline.engine.contract import Hooks
    from stepline.engine.pauses import PauseMode

    return Hooks(pause_mode=PauseMode.NEVER)


__all__ = ["__version__", "resume", "run"]
