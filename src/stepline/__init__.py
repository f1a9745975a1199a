"""stepline: run multi-step, LLM-backed pipelines in resumable work folders.

Use it from Python the way the CLI does::

    import stepline

    preview = stepline.plan("pipeline-config.yaml", "notes.txt", replay="demo-cassette.jsonl")
    result = stepline.run("pipeline-config.yaml", "notes.txt", replay="demo-cassette.jsonl")
    print(result.status, result.outputs["extract"])
    result = stepline.resume(result.run_id, from_step="count")

The engine is imported on first use, so ``import stepline`` stays cheap.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stepline.engine.contract import Hooks, RunResult
    from stepline.engine.prepare import Preview
    from stepline.settings import Settings

__version__ = "0.1.0"

StrPath = str | PathLike[str]


def run(
    config: StrPath,
    input: StrPath,
    *,
    workdir: StrPath | None = None,
    hooks: Hooks | None = None,
    **options: Any,
) -> RunResult:
    """Start a run of the pipeline at ``config`` on ``input``; return how it ended.

    ``options`` are ``pipeline run``'s options by their long names (``RunOptions`` in
    ``stepline.engine.prepare``): ``run_id``, ``variables`` (``--set``, a mapping),
    ``from_step``, ``to_step``, ``model``, ``provider``, ``concurrency``, ``max_cost``,
    ``batch``, ``no_cache``, ``replay``, ``record``. An unknown name is a ``TypeError``.
    Pause points are passed unless ``hooks`` says otherwise. Errors in the config or the
    input raise ``stepline.errors.StepLineError`` subclasses before anything is written.
    """
    from stepline.engine import api
    from stepline.engine.prepare import RunOptions

    return api.run(
        Path(config),
        Path(input),
        settings=_settings(workdir),
        options=RunOptions.of(**options),
        hooks=hooks or _default_hooks(),
    )


def resume(
    run_id: str,
    *,
    config: StrPath | None = None,
    workdir: StrPath | None = None,
    hooks: Hooks | None = None,
    **options: Any,
) -> RunResult:
    """Continue a run: completed, unchanged steps are reused and the rest run. ``options``
    are ``pipeline resume``'s (those of ``run`` but ``run_id``, and ``no_replay``,
    ``skip_failed``, ``fresh_items``)."""
    from stepline.engine import api
    from stepline.engine.prepare import RunOptions

    return api.resume(
        run_id,
        settings=_settings(workdir),
        options=RunOptions.of(**options),
        hooks=hooks or _default_hooks(),
        config_path=Path(config) if config is not None else None,
    )


def plan(
    config: StrPath, input: StrPath, *, workdir: StrPath | None = None, **options: Any
) -> Preview:
    """What ``run`` would do, as ``--dry-run`` shows it, as data: each step's decision and
    why, the LLM steps' token and cost estimates, the budget; nothing is written.
    ``Preview.to_json()`` is what ``--dry-run --json`` prints."""
    from stepline.engine import api
    from stepline.engine.prepare import RunOptions

    return api.preview_new_run(
        Path(config), Path(input), settings=_settings(workdir), options=RunOptions.of(**options)
    )


def plan_resume(
    run_id: str, *, config: StrPath | None = None, workdir: StrPath | None = None, **options: Any
) -> Preview:
    """What ``resume`` would do (``pipeline resume RUN_ID --dry-run``), as data."""
    from stepline.engine import api
    from stepline.engine.prepare import RunOptions

    return api.preview_resume(
        run_id,
        settings=_settings(workdir),
        options=RunOptions.of(**options),
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


__all__ = ["__version__", "plan", "plan_resume", "resume", "run"]
